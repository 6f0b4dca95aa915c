//! Named stall points for tests that kill pigpu at an exact moment (a kill during a rollback, a
//! kill just before a commit). With the `testing` feature, `PIGPU_TEST_STALL=<point>` makes the
//! process announce `test hook: stalled at <point>` on stderr and then wait to be killed; a
//! release build has an empty function here and neither the variable nor the message in it.

use std::fmt;

/// Stops here for good when `PIGPU_TEST_STALL` names `point` (test builds only).
#[cfg(any(test, feature = "testing"))]
pub fn stall(point: fmt::Arguments) {
    let Some(want) = std::env::var_os("PIGPU_TEST_STALL") else {
        return;
    };
    let point = point.to_string();
    if want.to_str() == Some(point.as_str()) {
        log::warn!("test hook: stalled at {point}");
        // The test kills the process; nothing else may happen meanwhile.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Release builds: nothing (the point's text is never even formatted).
#[cfg(not(any(test, feature = "testing")))]
#[inline(always)]
pub fn stall(_point: fmt::Arguments) {}
