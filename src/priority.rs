//! The media workers' scheduling priority (`media.worker_nice`): on a busy machine SIP, the
//! database and HTTP wait rather than the audio.
//!
//! A nice value below 0 needs CAP_SYS_NICE. Root has it; the container image gives its
//! unprivileged binary the capability as a *permitted* file capability (`cap_sys_nice+p`), which
//! the kernel grants only when the container was started with it (`--cap-add SYS_NICE`) and
//! which is not *effective* until the thread raises it: [`raise_sys_nice`] does that, on each
//! worker thread, just before setpriority(2), and drops it again right after (the workers parse
//! what strangers send). A binary marked `+ep` instead would not start at all where the
//! capability is withheld.

use std::sync::Arc;

/// What each media worker runs first: takes scheduling priority `nice`; false (and a warning)
/// when the system refuses.
pub fn worker_priority(nice: i32) -> Arc<dyn Fn() -> bool + Send + Sync> {
    Arc::new(move || {
        if nice == 0 {
            return true;
        }
        #[cfg(target_os = "linux")]
        {
            let raised = nice < 0 && raise_sys_nice();
            // SAFETY: setpriority(2) with who = 0 sets the calling thread's nice value (on
            // Linux each thread has its own); it touches no memory of ours.
            let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } == 0;
            if raised {
                // This thread parses what strangers send; it keeps no privilege it no longer
                // needs.
                drop_sys_nice();
            }
            if !done {
                tracing::warn!(nice, "cannot raise the media worker's priority (needs root or CAP_SYS_NICE: docker run --cap-add SYS_NICE, systemd AmbientCapabilities=CAP_SYS_NICE); it runs at the default");
            }
            done
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    })
}

/// Linux capability number of CAP_SYS_NICE (linux/capability.h).
#[cfg(target_os = "linux")]
const CAP_SYS_NICE: u32 = 23;
/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two 32-bit words.
#[cfg(target_os = "linux")]
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[cfg(target_os = "linux")]
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's capability sets (capget(2)); None when the kernel refuses.
#[cfg(target_os = "linux")]
fn thread_caps() -> Option<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with version 3 writes exactly two CapData entries, which `data` holds;
    // pid 0 is the calling thread.
    let got = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    (got == 0).then_some(data)
}

/// Sets the calling thread's capability sets (capset(2)); true when the kernel took them.
#[cfg(target_os = "linux")]
fn set_thread_caps(data: &[CapData; 2]) -> bool {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset(2) reads the header and two CapData entries. Raising a permitted
    // capability into the effective set, or dropping one, needs no privilege beyond that.
    let set = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    set == 0
}

/// Moves CAP_SYS_NICE from the calling thread's permitted set into its effective set; true
/// when it is effective afterwards. Nothing happens (false) when it is not permitted.
#[cfg(target_os = "linux")]
pub fn raise_sys_nice() -> bool {
    let bit = 1u32 << CAP_SYS_NICE;
    let Some(mut data) = thread_caps() else {
        return false;
    };
    if data[0].permitted & bit == 0 {
        return false;
    }
    if data[0].effective & bit != 0 {
        return true;
    }
    data[0].effective |= bit;
    set_thread_caps(&data)
}

/// Removes CAP_SYS_NICE from the calling thread's effective and permitted sets, for good.
#[cfg(target_os = "linux")]
fn drop_sys_nice() {
    let bit = 1u32 << CAP_SYS_NICE;
    if let Some(mut data) = thread_caps() {
        data[0].effective &= !bit;
        data[0].permitted &= !bit;
        set_thread_caps(&data);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whatever this process holds, raising is consistent with what capget reports: true
    /// exactly when CAP_SYS_NICE is permitted (root in CI: true; an unprivileged user: false).
    #[test]
    fn raising_follows_the_permitted_set() {
        let permitted = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("CapPrm:"))
            .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
            .unwrap();
        let has = permitted & (1 << CAP_SYS_NICE) != 0;
        // Run on a thread of its own: capabilities are per thread, and the test harness's
        // other threads should not see a change.
        let raised = std::thread::spawn(raise_sys_nice).join().unwrap();
        assert_eq!(raised, has);
    }
}
