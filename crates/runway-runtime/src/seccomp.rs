//! The default seccomp profile: a denylist. Every syscall is allowed except those a web
//! application never needs and that widen the kernel's attack surface (kernel modules,
//! kexec, mounts, namespaces, keyrings, BPF, perf, ptrace and cross-process memory access,
//! io_uring, clock and swap changes). `clone3` answers ENOSYS so that libc falls back to
//! `clone`, whose flags a filter can see; `clone` creating a user namespace is refused.
//!
//! A denylist rather than Docker's allowlist: it is short enough to review, never breaks
//! a program by omitting a syscall the allowlist's authors did not foresee, and the
//! capability set already stops most of what the allowlist exists for. Its cost is that a
//! new dangerous syscall is allowed until it is listed here.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// Syscalls that fail with EPERM.
pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const CLONE_NEWUSER: u64 = 0x1000_0000;

fn rule(names: &[&str], errno: u32) -> LinuxSyscallBuilder {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno)
}

/// The profile, for x86-64 and its 32-bit ABIs.
pub fn profile() -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
    let clone_newuser = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(CLONE_NEWUSER)
        .value_two(CLONE_NEWUSER)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()?;
    let syscalls: Vec<LinuxSyscall> = vec![
        rule(DENIED, EPERM).build()?,
        rule(&["clone3"], ENOSYS).build()?,
        rule(&["clone"], EPERM).args(vec![clone_newuser]).build()?,
    ];
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(syscalls)
        .build()
}
