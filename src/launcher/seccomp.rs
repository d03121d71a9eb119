//! OCI `LinuxSeccomp` -> classic BPF, compiled here (in the parent, so a bad profile fails
//! `create` before any clone) and installed by the init with seccomp(2).
//!
//! Why our own compiler and not `seccompiler` or `libseccomp`: `seccompiler` cannot express an
//! OCI profile (one match action per filter, while profiles mix ALLOW/ERRNO(n)/KILL per rule),
//! its `apply_filter` always sets no_new_privs (wrong when `noNewPrivileges` is false), and its
//! syscall tables are private. `libseccomp` would add a C library to build and to install on
//! every machine. The BPF needed is small (below) and unit-tested with a BPF interpreter; the
//! syscall numbers come from the pure-Rust `syscalls` crate's tables (native arch plus its
//! 32-bit compat arch: x86 on x86_64, arm on aarch64).
//!
//! Program layout:
//! ```text
//! ld arch; secondary arch listed? -> secondary block; native? -> native block; else ERRNO(ENOSYS)
//! block:  ld nr; [x86_64: nr >= X32 bit -> ERRNO(ENOSYS)]
//!         per syscall: jeq nr else skip; rules with args (spec order; AND inside an entry, an
//!         entry naming one argument twice becomes one rule per condition, as runc does);
//!         then the first unconditional rule; else the default action
//!         ret default
//! ```
//! Semantics follow libseccomp/runc: argument rules are more specific, so they are tried before
//! an unconditional rule for the same syscall; unknown syscall names are skipped (profiles list
//! names of other architectures); 64-bit argument comparisons compare both words.
//! Limitations: `SCMP_ACT_NOTIFY` (no listener support) is refused; syscalls of ABIs not
//! compiled (x32, foreign arches) fail with ENOSYS.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const BPF_MAXINSNS: usize = 4096;

/// A compiled filter: the program and the seccomp(2) flags.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub program: Vec<libc::sock_filter>,
    pub flags: libc::c_ulong,
}

struct ArchTable {
    name: &'static str,
    audit: u32,
    x32_guard: bool,
    lookup: fn(&str) -> Option<u32>,
}

fn x86_64_nr(name: &str) -> Option<u32> {
    syscalls::x86_64::Sysno::from_str(name)
        .ok()
        .map(|s| s.id() as u32)
}
fn x86_nr(name: &str) -> Option<u32> {
    syscalls::x86::Sysno::from_str(name)
        .ok()
        .map(|s| s.id() as u32)
}
fn aarch64_nr(name: &str) -> Option<u32> {
    syscalls::aarch64::Sysno::from_str(name)
        .ok()
        .map(|s| s.id() as u32)
}
fn arm_nr(name: &str) -> Option<u32> {
    syscalls::arm::Sysno::from_str(name)
        .ok()
        .map(|s| s.id() as u32)
}

const X86_64: ArchTable = ArchTable {
    name: "x86_64",
    audit: 0xc000_003e,
    x32_guard: true,
    lookup: x86_64_nr,
};
const X86: ArchTable = ArchTable {
    name: "x86",
    audit: 0x4000_0003,
    x32_guard: false,
    lookup: x86_nr,
};
const AARCH64: ArchTable = ArchTable {
    name: "aarch64",
    audit: 0xc000_00b7,
    x32_guard: false,
    lookup: aarch64_nr,
};
const ARM: ArchTable = ArchTable {
    name: "arm",
    audit: 0x4000_0028,
    x32_guard: false,
    lookup: arm_nr,
};

/// (native, secondary) tables of this build.
fn host_arches() -> (&'static ArchTable, &'static ArchTable, Arch) {
    if cfg!(target_arch = "aarch64") {
        (&AARCH64, &ARM, Arch::ScmpArchArm)
    } else {
        (&X86_64, &X86, Arch::ScmpArchX86)
    }
}

#[derive(Clone, Copy)]
enum T {
    Next,
    L(usize),
}

enum I {
    S { code: u16, k: u32 },
    J { code: u16, k: u32, jt: T, jf: T },
    Ja(T),
    Mark(usize),
    Raw(libc::sock_filter),
}

/// A tiny assembler with forward labels.
#[derive(Default)]
struct Asm {
    items: Vec<I>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn mark(&mut self, l: usize) {
        self.items.push(I::Mark(l));
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.items.push(I::S { code, k });
    }
    fn jump(&mut self, code: u16, k: u32, jt: T, jf: T) {
        self.items.push(I::J { code, k, jt, jf });
    }
    fn ja(&mut self, t: T) {
        self.items.push(I::Ja(t));
    }
    fn ret(&mut self, k: u32) {
        self.stmt(RET_K, k);
    }
    fn raw(&mut self, prog: Vec<libc::sock_filter>) {
        self.items.extend(prog.into_iter().map(I::Raw));
    }

    fn finish(self) -> Result<Vec<libc::sock_filter>, String> {
        let mut pos = vec![usize::MAX; self.labels];
        let mut n = 0;
        for it in &self.items {
            match it {
                I::Mark(l) => pos[*l] = n,
                _ => n += 1,
            }
        }
        let mut out = Vec::with_capacity(n);
        let off = |t: T, here: usize| -> Result<usize, String> {
            match t {
                T::Next => Ok(0),
                T::L(l) => pos
                    .get(l)
                    .copied()
                    .filter(|&p| p != usize::MAX && p > here)
                    .map(|p| p - here - 1)
                    .ok_or_else(|| "internal error: unresolved seccomp label".to_string()),
            }
        };
        for it in self.items {
            let here = out.len();
            match it {
                I::Mark(_) => {}
                I::Raw(f) => out.push(f),
                I::S { code, k } => out.push(ins(code, k, 0, 0)),
                I::Ja(t) => {
                    let k = u32::try_from(off(t, here)?).map_err(|e| e.to_string())?;
                    out.push(ins(JMP_JA, k, 0, 0));
                }
                I::J { code, k, jt, jf } => {
                    let jt = u8::try_from(off(jt, here)?);
                    let jf = u8::try_from(off(jf, here)?);
                    match (jt, jf) {
                        (Ok(jt), Ok(jf)) => out.push(ins(code, k, jt, jf)),
                        _ => return Err("seccomp rule too large (jump beyond 255)".into()),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn ins(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// One rule: all conditions must hold, then `action` is returned.
#[derive(Clone)]
struct Rule {
    conds: Vec<LinuxSeccompArg>,
    action: u32,
}

#[derive(Default)]
struct SyscallRules {
    conditional: Vec<Rule>,
    unconditional: Option<u32>,
}

fn action_value(action: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, String> {
    match action {
        LinuxSeccompAction::ScmpActNotify => {
            Err("seccomp action SCMP_ACT_NOTIFY is not supported".into())
        }
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
            if errno.is_some_and(|e| e > 0xffff) =>
        {
            Err(format!(
                "seccomp errnoRet {} out of range",
                errno.unwrap_or(0)
            ))
        }
        a => Ok(a.as_u32(errno)),
    }
}

/// Compiles an OCI seccomp profile for this machine's architecture.
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Filter, String> {
    let default = action_value(profile.default_action(), profile.default_errno_ret())?;
    let (native, secondary, secondary_arch) = host_arches();
    let with_secondary = profile
        .architectures()
        .as_ref()
        .is_some_and(|a| a.contains(&secondary_arch));

    let mut flags: libc::c_ulong = 0;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 1 << 5,
        };
    }

    let native_block = arch_block(profile, native, default)?;
    let mut asm = Asm::default();
    asm.stmt(LD_W_ABS, OFF_ARCH);
    let l_native = asm.label();
    if with_secondary {
        let secondary_block = arch_block(profile, secondary, default)?;
        // Secondary first in the check, but laid out after the native block (reached by `ja`).
        let l_secondary = asm.label();
        asm.jump(JMP_JEQ_K, secondary.audit, T::Next, T::L(l_native));
        asm.ja(T::L(l_secondary));
        asm.mark(l_native);
        let l_in = asm.label();
        asm.jump(JMP_JEQ_K, native.audit, T::L(l_in), T::Next);
        asm.ret(RET_ERRNO | libc::ENOSYS as u32);
        asm.mark(l_in);
        asm.raw(native_block);
        asm.mark(l_secondary);
        asm.raw(secondary_block);
    } else {
        asm.jump(JMP_JEQ_K, native.audit, T::L(l_native), T::Next);
        asm.ret(RET_ERRNO | libc::ENOSYS as u32);
        asm.mark(l_native);
        asm.raw(native_block);
    }
    let program = asm.finish()?;
    if program.len() > BPF_MAXINSNS {
        return Err(format!(
            "seccomp profile compiles to {} BPF instructions (the kernel allows {BPF_MAXINSNS})",
            program.len()
        ));
    }
    Ok(Filter { program, flags })
}

fn arch_block(
    profile: &LinuxSeccomp,
    arch: &ArchTable,
    default: u32,
) -> Result<Vec<libc::sock_filter>, String> {
    let mut table: BTreeMap<u32, SyscallRules> = BTreeMap::new();
    for entry in profile.syscalls().iter().flatten() {
        let action = action_value(entry.action(), entry.errno_ret())?;
        let args = entry.args().clone().unwrap_or_default();
        for a in &args {
            if a.index() > 5 {
                return Err(format!("seccomp argument index {} out of range", a.index()));
            }
        }
        let mut seen = [false; 6];
        let repeated = args
            .iter()
            .any(|a| std::mem::replace(&mut seen[a.index()], true));
        let rules: Vec<Rule> = if repeated {
            args.iter()
                .map(|a| Rule {
                    conds: vec![*a],
                    action,
                })
                .collect()
        } else {
            vec![Rule {
                conds: args.clone(),
                action,
            }]
        };
        for name in entry.names() {
            let Some(nr) = (arch.lookup)(name) else {
                tracing::debug!(syscall = %name, arch = arch.name, "seccomp: unknown syscall skipped");
                continue;
            };
            let slot = table.entry(nr).or_default();
            if args.is_empty() {
                slot.unconditional.get_or_insert(action);
            } else {
                slot.conditional.extend(rules.iter().cloned());
            }
        }
    }

    let mut asm = Asm::default();
    asm.stmt(LD_W_ABS, OFF_NR);
    if arch.x32_guard {
        let l_ok = asm.label();
        asm.jump(JMP_JGE_K, X32_SYSCALL_BIT, T::Next, T::L(l_ok));
        asm.ret(RET_ERRNO | libc::ENOSYS as u32);
        asm.mark(l_ok);
    }
    for (nr, rules) in &table {
        let block = syscall_block(rules, default)?;
        if block.len() <= 255 {
            asm.items
                .push(I::Raw(ins(JMP_JEQ_K, *nr, 0, block.len() as u8)));
        } else {
            asm.items.push(I::Raw(ins(JMP_JEQ_K, *nr, 1, 0)));
            asm.items
                .push(I::Raw(ins(JMP_JA, block.len() as u32, 0, 0)));
        }
        asm.raw(block);
    }
    asm.ret(default);
    asm.finish()
}

/// The code run once the syscall number matched: argument rules, then the unconditional rule
/// or the default. Always ends in `ret`.
fn syscall_block(rules: &SyscallRules, default: u32) -> Result<Vec<libc::sock_filter>, String> {
    let mut asm = Asm::default();
    for rule in &rules.conditional {
        let fail = asm.label();
        for c in &rule.conds {
            condition(&mut asm, c, fail);
        }
        asm.ret(rule.action);
        asm.mark(fail);
    }
    asm.ret(rules.unconditional.unwrap_or(default));
    asm.finish()
}

/// Emits a 64-bit comparison of one argument; falls through when it holds, jumps to `fail`
/// otherwise.
fn condition(asm: &mut Asm, c: &LinuxSeccompArg, fail: usize) {
    let lo_off = OFF_ARGS + 8 * c.index() as u32;
    let hi_off = lo_off + 4;
    let v = c.value();
    let (vhi, vlo) = ((v >> 32) as u32, v as u32);
    let f = T::L(fail);
    let pass = asm.label();
    let p = T::L(pass);
    match c.op() {
        LinuxSeccompOperator::ScmpCmpEq => {
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JMP_JEQ_K, vhi, T::Next, f);
            asm.stmt(LD_W_ABS, lo_off);
            asm.jump(JMP_JEQ_K, vlo, T::Next, f);
        }
        LinuxSeccompOperator::ScmpCmpNe => {
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JMP_JEQ_K, vhi, T::Next, p);
            asm.stmt(LD_W_ABS, lo_off);
            asm.jump(JMP_JEQ_K, vlo, f, T::Next);
        }
        LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe => {
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JMP_JGT_K, vhi, p, T::Next);
            asm.jump(JMP_JEQ_K, vhi, T::Next, f);
            asm.stmt(LD_W_ABS, lo_off);
            let code = if c.op() == LinuxSeccompOperator::ScmpCmpGt {
                JMP_JGT_K
            } else {
                JMP_JGE_K
            };
            asm.jump(code, vlo, T::Next, f);
        }
        LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe => {
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JMP_JGE_K, vhi, T::Next, p);
            asm.jump(JMP_JEQ_K, vhi, T::Next, f);
            asm.stmt(LD_W_ABS, lo_off);
            let code = if c.op() == LinuxSeccompOperator::ScmpCmpLt {
                JMP_JGE_K
            } else {
                JMP_JGT_K
            };
            asm.jump(code, vlo, f, T::Next);
        }
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let want = c.value_two().unwrap_or(0);
            asm.stmt(LD_W_ABS, hi_off);
            asm.stmt(ALU_AND_K, vhi);
            asm.jump(JMP_JEQ_K, (want >> 32) as u32, T::Next, f);
            asm.stmt(LD_W_ABS, lo_off);
            asm.stmt(ALU_AND_K, vlo);
            asm.jump(JMP_JEQ_K, want as u32, T::Next, f);
        }
    }
    asm.mark(pass);
}

#[cfg(test)]
pub(crate) mod tests {
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    use super::*;

    /// Runs a classic BPF seccomp program on (arch, nr, args): the subset we emit.
    pub(crate) fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend_from_slice(&nr.to_le_bytes());
        data.extend_from_slice(&arch.to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        for a in args {
            data.extend_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                ALU_AND_K => acc &= i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                    let t = match i.code {
                        JMP_JEQ_K => acc == i.k,
                        JMP_JGT_K => acc > i.k,
                        _ => acc >= i.k,
                    };
                    pc += if t { i.jt } else { i.jf } as usize;
                }
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    const ALLOW: u32 = 0x7fff_0000;

    fn nr(name: &str) -> u32 {
        (host_arches().0.lookup)(name).unwrap()
    }

    fn arg(
        index: usize,
        value: u64,
        value_two: Option<u64>,
        op: LinuxSeccompOperator,
    ) -> LinuxSeccompArg {
        let b = LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(op);
        let b = match value_two {
            Some(v) => b.value_two(v),
            None => b,
        };
        b.build().unwrap()
    }

    #[test]
    fn allowlist_with_errno_default_and_arg_rules() {
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .default_errno_ret(38u32)
            .architectures(vec![
                Arch::ScmpArchX86_64,
                Arch::ScmpArchX86,
                Arch::ScmpArchX32,
            ])
            .syscalls(vec![
                LinuxSyscallBuilder::default()
                    .names(vec!["read".into(), "write".into(), "no_such_call".into()])
                    .action(LinuxSeccompAction::ScmpActAllow)
                    .build()
                    .unwrap(),
                // socket allowed except family 40 (AF_VSOCK), which gets EACCES.
                LinuxSyscallBuilder::default()
                    .names(vec!["socket".into()])
                    .action(LinuxSeccompAction::ScmpActAllow)
                    .build()
                    .unwrap(),
                LinuxSyscallBuilder::default()
                    .names(vec!["socket".into()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(13u32)
                    .args(vec![arg(0, 40, None, LinuxSeccompOperator::ScmpCmpEq)])
                    .build()
                    .unwrap(),
                // clone allowed only without namespace flags (masked eq).
                LinuxSyscallBuilder::default()
                    .names(vec!["clone".into()])
                    .action(LinuxSeccompAction::ScmpActAllow)
                    .args(vec![arg(
                        0,
                        0x7e02_0000,
                        Some(0),
                        LinuxSeccompOperator::ScmpCmpMaskedEq,
                    )])
                    .build()
                    .unwrap(),
                // personality: two values for the same argument are OR'd.
                LinuxSyscallBuilder::default()
                    .names(vec!["personality".into()])
                    .action(LinuxSeccompAction::ScmpActAllow)
                    .args(vec![
                        arg(0, 0, None, LinuxSeccompOperator::ScmpCmpEq),
                        arg(0, 0xffff_ffff, None, LinuxSeccompOperator::ScmpCmpEq),
                    ])
                    .build()
                    .unwrap(),
                LinuxSyscallBuilder::default()
                    .names(vec!["getpid".into()])
                    .action(LinuxSeccompAction::ScmpActKillProcess)
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        let f = compile(&profile).unwrap();
        let p = &f.program;
        let enosys = RET_ERRNO | 38;
        assert_eq!(run(p, host_arches().0.audit, nr("read"), [0; 6]), ALLOW);
        assert_eq!(run(p, host_arches().0.audit, nr("write"), [0; 6]), ALLOW);
        assert_eq!(run(p, host_arches().0.audit, nr("mkdir"), [0; 6]), enosys);
        assert_eq!(
            run(p, host_arches().0.audit, nr("socket"), [2, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            run(p, host_arches().0.audit, nr("socket"), [40, 0, 0, 0, 0, 0]),
            RET_ERRNO | 13
        );
        assert_eq!(
            run(p, host_arches().0.audit, nr("clone"), [0x11, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            run(
                p,
                host_arches().0.audit,
                nr("clone"),
                [0x1000_0011, 0, 0, 0, 0, 0]
            ),
            enosys
        );
        assert_eq!(
            run(
                p,
                host_arches().0.audit,
                nr("personality"),
                [0, 0, 0, 0, 0, 0]
            ),
            ALLOW
        );
        assert_eq!(
            run(
                p,
                host_arches().0.audit,
                nr("personality"),
                [0xffff_ffff, 0, 0, 0, 0, 0]
            ),
            ALLOW
        );
        assert_eq!(
            run(
                p,
                host_arches().0.audit,
                nr("personality"),
                [8, 0, 0, 0, 0, 0]
            ),
            enosys
        );
        assert_eq!(
            run(p, host_arches().0.audit, nr("getpid"), [0; 6]),
            0x8000_0000
        );
        // x32 ABI and unknown arches: ENOSYS.
        assert_eq!(
            run(
                p,
                host_arches().0.audit,
                X32_SYSCALL_BIT | nr("read"),
                [0; 6]
            ),
            RET_ERRNO | 38
        );
        assert_eq!(run(p, 0x1234, 0, [0; 6]), RET_ERRNO | libc::ENOSYS as u32);
        // The 32-bit compat arch uses its own numbers (x86: read = 3).
        if cfg!(target_arch = "x86_64") {
            assert_eq!(run(p, 0x4000_0003, 3, [0; 6]), ALLOW);
            assert_eq!(run(p, 0x4000_0003, 39, [0; 6]), enosys); // mkdir on i386
        }
    }

    #[test]
    fn comparisons_are_64_bit() {
        let mk = |op, v| {
            LinuxSeccompBuilder::default()
                .default_action(LinuxSeccompAction::ScmpActAllow)
                .syscalls(vec![
                    LinuxSyscallBuilder::default()
                        .names(vec!["ioctl".into()])
                        .action(LinuxSeccompAction::ScmpActErrno)
                        .args(vec![arg(1, v, None, op)])
                        .build()
                        .unwrap(),
                ])
                .build()
                .unwrap()
        };
        let v: u64 = 0x1_0000_0005;
        type Case = (LinuxSeccompOperator, fn(u64, u64) -> bool);
        let cases: [Case; 6] = [
            (LinuxSeccompOperator::ScmpCmpEq, |a, b| a == b),
            (LinuxSeccompOperator::ScmpCmpNe, |a, b| a != b),
            (LinuxSeccompOperator::ScmpCmpLt, |a, b| a < b),
            (LinuxSeccompOperator::ScmpCmpLe, |a, b| a <= b),
            (LinuxSeccompOperator::ScmpCmpGt, |a, b| a > b),
            (LinuxSeccompOperator::ScmpCmpGe, |a, b| a >= b),
        ];
        for (op, want) in cases {
            let f = compile(&mk(op, v)).unwrap();
            for a in [
                0,
                5,
                6,
                0x1_0000_0004,
                v,
                0x1_0000_0006,
                0x2_0000_0000,
                u64::MAX,
            ] {
                let got = run(
                    &f.program,
                    host_arches().0.audit,
                    nr("ioctl"),
                    [0, a, 0, 0, 0, 0],
                );
                let expect = if want(a, v) { RET_ERRNO | 1 } else { ALLOW };
                assert_eq!(got, expect, "{op:?} {a:#x} vs {v:#x}");
            }
        }
    }

    #[test]
    fn notify_is_refused() {
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActNotify)
            .build()
            .unwrap();
        assert!(compile(&profile).unwrap_err().contains("NOTIFY"));
    }
}
