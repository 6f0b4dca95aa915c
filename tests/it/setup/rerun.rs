//! Reruns of `pigpu setup` on fake roots: the opt-outs of the first run stick, a kernel upgrade
//! that slipped through is found by doctor and rebuilt for by the next run (issue 19), and
//! `--undo` leaves the module index and the directories as they were before the first run. Each
//! test runs the real Kbuild build of the fixture twice (a few seconds each).

use super::*;

/// Entries of a directory, sorted (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// doctor's `driver-modules` finding on `root`: (status, summary).
fn driver_modules(root: &Path) -> (String, String) {
    let root = root.to_str().unwrap();
    let (_, v, _, _) =
        crate::fake_root::doctor(&["--json", "--check", "driver", "--root", root], None);
    let f = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "driver-modules")
        .cloned()
        .unwrap_or_else(|| panic!("no driver-modules finding: {v}"));
    (
        f["status"].as_str().unwrap_or("").to_string(),
        f["summary"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn opt_outs_stick_and_undo_keeps_an_index_that_was_there_before() {
    let t = TempDir::new().unwrap();
    let (root, rel) = gpu_root(t.path(), 0x2204);
    // A kernel package to hold (so the hold would be planned if the opt-out were forgotten),
    // and a module index from before pigpu, as every real system has.
    let status = root.join("var/lib/dpkg/status");
    let mut text = fs::read_to_string(&status).unwrap();
    text.push_str("\nPackage: linux-image-rpi-v8\nStatus: install ok installed\nVersion: 1\n");
    fs::write(&status, text).unwrap();
    let log = t.path().join("depmod.log");
    pigpu::sys::command::depmod(&Default::default(), &root, &rel, &log).unwrap();
    let kdir = root.join("lib/modules").join(&rel);
    let index_before = entries(&kdir);
    assert!(index_before.contains(&"modules.dep".to_string()));
    let dep_before = fs::read(kdir.join("modules.dep")).unwrap();

    let s = serve(t.path());
    let m = manifest(t.path(), &s.base, |x| x);
    let mut host = RecordingHost::default();
    let opt_out = ["--persist", "none", "--no-kernel-hold", "--no-apt-pin"];
    assert_eq!(setup(&root, &m, &opt_out, &mut host).unwrap(), Outcome::Ok);
    assert!(
        !host.calls.iter().any(|c| c.contains("hold")),
        "{:?}",
        host.calls
    );
    let pin = root.join("etc/apt/preferences.d/pigpu-nvidia.pref");
    assert!(!pin.exists());
    let st: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("var/lib/pigpu/state.json")).unwrap()).unwrap();
    assert_eq!(st["choices"]["hold_kernel"], false, "{st}");
    assert_eq!(st["choices"]["apt_pin"], false, "{st}");

    // A rerun without the flags keeps them: nothing held, no pin, and the plan says why.
    let out = util::pigpu()
        .args(["setup", "--dry-run", "--json", "--root"])
        .arg(&root)
        .arg("--manifest")
        .arg(&m)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"].as_array().unwrap().len(), 0, "{v}");
    let skipped = v["skipped"].to_string();
    assert!(
        skipped.contains("--no-kernel-hold") && skipped.contains("--no-apt-pin"),
        "{v}"
    );
    let mut host2 = RecordingHost::default();
    assert_eq!(setup(&root, &m, &[], &mut host2).unwrap(), Outcome::Ok);
    assert!(host2.calls.is_empty(), "{:?}", host2.calls);
    assert!(!pin.exists());

    // Undo: the index that was there is rebuilt by depmod (back to what it was), not removed.
    let mut host3 = RecordingHost::default();
    assert_eq!(
        setup(&root, &m, &["--undo"], &mut host3).unwrap(),
        Outcome::Ok
    );
    assert_eq!(entries(&kdir), index_before);
    assert_eq!(fs::read(kdir.join("modules.dep")).unwrap(), dep_before);
    assert_setup_dirs_gone(&root);
}

#[test]
fn a_kernel_upgrade_that_slipped_through_is_found_and_rebuilt_for() {
    let t = TempDir::new().unwrap();
    let (root, rel) = make_root(
        t.path(),
        &RootOpts {
            gpu: Some(0x2204),
            running: Some(headers().0),
            ..Default::default()
        },
    );
    // config.txt boots the 4K kernel with the connector on already: no reboot in the way.
    let config = root.join("boot/firmware/config.txt");
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("[all]\nkernel=kernel8.img\ndtparam=pciex1\n");
    fs::write(&config, text).unwrap();
    let s = serve(t.path());
    let m = manifest(t.path(), &s.base, |x| x);
    let mut host = RecordingHost::default();
    setup(&root, &m, &["--persist", "none"], &mut host).unwrap();
    assert!(
        host.calls.contains(&"load nvidia nvidia-uvm".to_string()),
        "{:?}",
        host.calls
    );
    let (_, summary) = driver_modules(&root);
    assert!(!summary.contains("no NVIDIA kernel module"), "{summary}");

    // An upgrade got past the hold: a new kernel is installed and booted, without modules.
    let new = format!("{rel}-upgraded");
    let old_dir = root.join("lib/modules").join(&rel);
    let new_dir = root.join("lib/modules").join(&new);
    fs::create_dir_all(&new_dir).unwrap();
    for link in ["build", "source"] {
        if let Ok(target) = fs::read_link(old_dir.join(link)) {
            std::os::unix::fs::symlink(target, new_dir.join(link)).unwrap();
        }
    }
    fs::write(root.join("proc/sys/kernel/osrelease"), format!("{new}\n")).unwrap();
    fs::write(
        root.join("proc/sys/kernel/random/boot_id"),
        "33333333-3333-3333-3333-333333333333\n",
    )
    .unwrap();
    fs::write(root.join("proc/modules"), "").unwrap();

    // doctor says so, naming the kernel that has modules ...
    let (status, summary) = driver_modules(&root);
    assert_eq!(status, "fail", "{summary}");
    assert!(
        summary.contains(&format!(
            "no NVIDIA kernel module is installed for the running kernel {new}"
        )) && summary.contains(&format!("there are modules for {rel}")),
        "{summary}"
    );
    // ... the plan rebuilds for the running kernel ...
    let chosen = Options {
        persist: Persist::None,
        ..options()
    };
    let p = plan_with(&root, &m, &chosen).unwrap();
    assert_eq!(p.target.as_deref(), Some(new.as_str()));
    assert_eq!(
        ids(&p),
        [
            "fetch",
            "prepare",
            "build",
            "install-modules",
            "load-modules"
        ],
        "{}",
        p.render()
    );
    // ... and the run does it: modules for the new kernel, loaded, and doctor is satisfied.
    let mut host2 = RecordingHost::default();
    setup(&root, &m, &[], &mut host2).unwrap();
    assert!(new_dir.join("kernel/drivers/video/nvidia.ko").is_file());
    assert!(old_dir.join("kernel/drivers/video/nvidia.ko").is_file());
    assert_eq!(host2.calls, ["load nvidia nvidia-uvm"]);
    let (_, summary) = driver_modules(&root);
    assert!(!summary.contains("no NVIDIA kernel module"), "{summary}");
}
