//! A process group for a long build (make and every compiler it starts) that dies whole with the
//! build: when the command ends, when pigpu is interrupted (SIGINT, SIGTERM, SIGHUP) and when
//! pigpu itself is killed by SIGKILL, which no handler sees.
//!
//! Why a group and not a signal to make: GNU make forwards a signal only to the children it has
//! recorded, so a job forked at that instant lives on (with its make waiting for it). Killing the
//! group reaches every process of the build at once, whoever forked it.
//!
//! How SIGKILL is covered: the group's leader is a tiny *reaper*, forked from pigpu before make
//! starts. It blocks reading a pipe whose only writer is pigpu; when pigpu exits or dies the read
//! returns, and the reaper kills its own group (itself included). The leader being the reaper
//! also means the group id stays in use for as long as the build runs, so the kill can never hit
//! an unrelated group that reused the number.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// The group of the build that runs now (0: none), for the signal handler.
static ACTIVE: AtomicI32 = AtomicI32::new(0);

/// The signals that end pigpu after killing the build's group.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// A live process group whose leader is the reaper. Commands join it with [`join`] in their
/// `pre_exec`; dropping the value kills whatever of the group still runs and reaps the reaper.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: libc::pid_t,
    /// pigpu's end of the reaper's pipe: closing it (by drop, exit or death) fires the reaper.
    wake: Option<OwnedFd>,
}

impl ProcessGroup {
    /// Forks the reaper (the new group's leader) and installs the signal handlers once.
    pub fn new() -> io::Result<ProcessGroup> {
        install_handlers();
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Computed before the fork: the child may only make async-signal-safe calls.
        // SAFETY: sysconf has no preconditions.
        let max_fd =
            unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(256, 1 << 20) as libc::c_int;
        // SAFETY: fork in a program with threads: the child runs only `reaper`, which makes
        // async-signal-safe system calls on values prepared before the fork and never returns.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                // SAFETY: in the freshly forked child, as `reaper` requires.
                unsafe { reaper(read.as_raw_fd(), write.as_raw_fd(), max_fd) }
            }
            _ => {
                drop(read);
                // Set on both sides (the classic race): the group must exist before make is
                // asked to join it, whichever process runs first.
                // SAFETY: plain system call on our own child.
                if unsafe { libc::setpgid(pid, pid) } != 0 {
                    let err = io::Error::last_os_error();
                    // The reaper exits only when it could not make its group (so it is safe to
                    // reap now); that leaves no group to run the build in.
                    // SAFETY: waiting for our own child.
                    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
                    return Err(err);
                }
                ACTIVE.store(pid, Ordering::SeqCst);
                Ok(ProcessGroup {
                    pgid: pid,
                    wake: Some(write),
                })
            }
        }
    }

    /// The group id, for [`join`].
    pub fn id(&self) -> libc::pid_t {
        self.pgid
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        ACTIVE.store(0, Ordering::SeqCst);
        // Closing the pipe wakes the reaper, which kills the group (stragglers of the build
        // and itself); then it is reaped here so no zombie is left.
        drop(self.wake.take());
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child, with a valid status pointer.
            let r = unsafe { libc::waitpid(self.pgid, &mut status, 0) };
            if r != -1 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
    }
}

/// Moves the calling process into group `pgid`. For a command's `pre_exec` (between fork and
/// exec): a plain system call. Fails when the group is gone (pigpu was stopped meanwhile), so the
/// command never starts outside it.
pub fn join(pgid: libc::pid_t) -> io::Result<()> {
    // SAFETY: setpgid is async-signal-safe and touches no memory.
    if unsafe { libc::setpgid(0, pgid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The reaper: leads its own group, holds none of pigpu's files (its lock, its output pipes),
/// waits for pigpu's end of the pipe to close, then kills the group, itself included.
///
/// # Safety
/// Only in a child just forked by [`ProcessGroup::new`], with `read`/`write` the two ends of its
/// pipe; everything here is an async-signal-safe system call.
unsafe fn reaper(read: libc::c_int, write: libc::c_int, max_fd: libc::c_int) -> ! {
    // SAFETY: (whole body) async-signal-safe calls on plain integers and static C strings.
    unsafe {
        libc::close(write);
        // Never kill(0) outside a group of our own: that would hit pigpu's group.
        if libc::setpgid(0, 0) != 0 {
            libc::_exit(1);
        }
        for sig in STOP_SIGNALS {
            libc::signal(sig, libc::SIG_DFL);
        }
        if read != 0 && libc::dup2(read, 0) != 0 {
            libc::_exit(1);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..max_fd {
                libc::close(fd);
            }
        }
        let mut byte = 0u8;
        loop {
            let n = libc::read(0, (&mut byte as *mut u8).cast(), 1);
            if n == -1 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break;
        }
        libc::kill(0, libc::SIGKILL);
        libc::_exit(0)
    }
}

fn install_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for sig in STOP_SIGNALS {
            // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler only makes
            // async-signal-safe calls.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_stop_signal as *const () as usize;
                new.sa_flags = libc::SA_RESETHAND;
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &new, &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN {
                    // Ignored by whoever started us (nohup, a background job): keep it so.
                    libc::sigaction(sig, &old, std::ptr::null_mut());
                }
            }
        }
    });
}

/// Kills the running build's group, then lets the signal end pigpu as it would have without a
/// handler (SA_RESETHAND put the default action back; the re-raised signal is delivered when
/// the handler returns).
extern "C" fn on_stop_signal(sig: libc::c_int) {
    let g = ACTIVE.load(Ordering::SeqCst);
    // SAFETY: kill and raise are async-signal-safe.
    unsafe {
        if g > 0 {
            libc::kill(-g, libc::SIGKILL);
        }
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    fn pgid_of(pid: u32) -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name in parentheses: state, ppid, pgrp.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(2)?.parse().ok()
    }

    #[test]
    fn members_die_with_the_group_and_the_reaper_is_reaped() {
        let g = ProcessGroup::new().unwrap();
        let id = g.id();
        let mut child = {
            let mut c = std::process::Command::new("sleep");
            c.arg("60");
            // SAFETY: `join` only calls setpgid.
            unsafe { c.pre_exec(move || join(id)) };
            c.spawn().unwrap()
        };
        assert_eq!(pgid_of(child.id()), Some(id));
        assert_eq!(pgid_of(id as u32), Some(id), "the reaper leads the group");
        let t0 = Instant::now();
        drop(g);
        let status = child.wait().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        // Reaped: no zombie left under that id.
        assert_eq!(pgid_of(id as u32), None);
        // A command cannot join a group that is gone: it never starts.
        let mut late = std::process::Command::new("true");
        // SAFETY: `join` only calls setpgid.
        unsafe { late.pre_exec(move || join(id)) };
        assert!(late.spawn().is_err());
    }
}
