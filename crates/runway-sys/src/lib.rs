//! The few calls into the kernel and the C library that runway needs and no safe crate
//! offers: real-time scheduling for the threads that must answer while the machine is
//! saturated, giving freed heap memory back to the system, and waiting for a descriptor
//! (a process's pidfd) in the async runtime without a thread.
//!
//! This is the one crate of the workspace that contains `unsafe` code (STYLE.md); each
//! block says why it is sound. It must never grow into a general FFI layer: a call that
//! a well-kept crate (rustix, nix) offers safely belongs there, not here.

use std::io;
use std::os::fd::OwnedFd;

/// `SCHED_RESET_ON_FORK` (linux/sched.h): processes and threads the thread starts do not
/// inherit its real-time policy.
const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;

/// Runs the calling thread under `SCHED_RR` at the lowest real-time priority: it is
/// given a CPU as soon as it is runnable, ahead of every ordinary thread of the host, so
/// its latency no longer depends on how many other threads want the CPUs. The kernel's
/// real-time throttling (`sched_rt_runtime_us`, 95 % by default) still leaves ordinary
/// threads their share if such a thread spins. Processes and threads it starts run
/// ordinarily (`SCHED_RESET_ON_FORK`).
///
/// Fails without the privilege (`CAP_SYS_NICE`, or a cgroup without real-time time).
pub fn run_thread_realtime() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call, which
    // only reads it; pid 0 names the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | SCHED_RESET_ON_FORK, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives the free memory of the C library's malloc arenas back to the system: glibc
/// keeps an arena per thread that ever allocated at once with another, and gives back
/// only the top of each on its own, so after a burst of work on many threads (200
/// services created and deleted) it held several times what the server uses. Costs a
/// walk over the arenas: call it now and then, not per request.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers and is thread-safe (it takes each arena's
    // lock); 0 keeps no extra padding at the top of the main heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Ends once `fd` turns readable (for a pidfd: once its process has ended), waiting in
/// the current tokio runtime's reactor rather than on a thread; `fd` is closed when the
/// future is dropped. Call it within a tokio runtime (with I/O enabled).
pub fn readable(fd: OwnedFd) -> io::Result<impl Future<Output = ()> + Send + 'static> {
    // SAFETY: the AsyncFd takes `fd` by value and owns it: an OwnedFd is open, nothing
    // else can close it, and it is closed only when the AsyncFd drops it, after taking it
    // out of the reactor; so it stays the same open descriptor while registered.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }?;
    Ok(async move {
        // An error from the reactor ends the wait too: the caller then looks for itself.
        let _ = fd.readable().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the calling thread runs under a real-time policy.
    fn thread_is_realtime() -> bool {
        // SAFETY: sched_getscheduler takes no pointers; pid 0 names the calling thread.
        let policy = unsafe { libc::sched_getscheduler(0) };
        policy & !SCHED_RESET_ON_FORK == libc::SCHED_RR
    }

    #[test]
    fn a_thread_made_realtime_starts_ordinary_threads() {
        std::thread::spawn(|| {
            match run_thread_realtime() {
                Ok(()) => {
                    assert!(thread_is_realtime());
                    let child = std::thread::spawn(thread_is_realtime).join().unwrap();
                    assert!(!child, "a thread it starts must not inherit the policy");
                }
                // Not root: the call must say so rather than pretend.
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
            }
        })
        .join()
        .unwrap();
        assert!(!thread_is_realtime(), "only the thread that asked");
    }

    /// Anonymous memory the process holds, in KiB.
    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn memory_freed_on_another_thread_is_given_back() {
        // 64 MiB in 64 KiB blocks (below the size malloc maps on its own) on a thread of
        // its own, so in an arena of that thread, each followed by a small block that
        // stays allocated, so that the freed blocks cannot merge and shrink the arena
        // from its top.
        let (held, pins) = std::thread::spawn(|| {
            let (blocks, pins): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (0..1024)
                .map(|_| (vec![1u8; 64 << 10], vec![1u8; 16]))
                .unzip();
            let held = rss_anon_kib();
            drop(blocks);
            (held, pins)
        })
        .join()
        .unwrap();
        release_free_memory();
        let after = rss_anon_kib();
        assert!(
            after + 32 * 1024 < held,
            "{held} KiB held before, {after} KiB after releasing"
        );
        drop(pins);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pidfd_turns_readable_when_its_process_ends() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: pidfd_open takes a pid and flags, no pointers.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        assert!(raw >= 0, "pidfd_open: {}", io::Error::last_os_error());
        // SAFETY: `raw` is a descriptor pidfd_open just opened, owned by nothing else.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
        let ended = readable(fd).unwrap();
        tokio::pin!(ended);
        let early = tokio::time::timeout(std::time::Duration::from_millis(100), &mut ended).await;
        assert!(early.is_err(), "readable before the process ended");
        tokio::time::timeout(std::time::Duration::from_secs(10), ended)
            .await
            .expect("not readable after the process ended");
        assert!(child.try_wait().unwrap().is_some(), "the process had ended");
    }
}
