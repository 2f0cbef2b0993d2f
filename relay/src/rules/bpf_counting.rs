//! The packet filter ([`super::bpf`]) translated to eBPF, counting what it takes.
//!
//! Why: the kernel drops a frame at a full ring without showing it to us (`tp_drops` counts
//! frames), and a GRO/GSO super-frame carries many datagrams. The only place that sees every
//! frame the socket takes, before the ring can drop it, is the socket's filter. Classic BPF
//! cannot read a frame's segment count; an eBPF socket filter can (`__sk_buff.gso_segs`). So
//! the same program the classic filter runs is translated one instruction at a time, and each
//! accepting return first adds the frame and its datagrams to a per-CPU counter (a map of one
//! entry: [`TakenCounts`]). The worker subtracts what it read from the ring to learn the
//! datagrams of the frames the kernel dropped (`dataplane::filter_count`).
//!
//! The translation keeps the classic program's semantics exactly (its tests run both on the
//! same frames): A lives in R0 and X in R7, the context stays in R6 (the legacy packet loads
//! `LD_ABS`/`LD_IND` read the packet through it and, like classic BPF, end the program with
//! 0 when the load is out of bounds), comparisons are 32-bit (`BPF_JMP32`: a classic
//! comparison is unsigned 32-bit, a 64-bit one would sign-extend a constant such as an IPv4
//! group), and the one ancillary load the filter uses, the packet type, reads
//! `__sk_buff.pkt_type`.

use super::bpf::{self as classic, Insn};

/// One eBPF instruction (`struct bpf_insn`): registers packed as `dst | src << 4`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EbpfInsn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// What the counting filter adds up on each CPU: the map's value (two `u64`s). The worker sums
/// the CPUs' values.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TakenCounts {
    /// Frames the filter accepted.
    pub frames: u64,
    /// Their datagrams: `gso_segs`, or 1 for a frame that is not a super-frame.
    pub datagrams: u64,
}

/// Why a classic program could not be translated (an instruction [`super::bpf`] never emits).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranslateError {
    #[error("classic BPF instruction {index} (opcode {code:#x}, k {k:#x}) has no translation")]
    Unsupported { index: usize, code: u16, k: u32 },
    #[error("classic BPF jump at {index} leaves the program")]
    JumpOutside { index: usize },
}

// The classic opcodes are `super::bpf`'s (`classic::...`); their load encodings are eBPF's
// too.

// eBPF encodings (linux/bpf.h, linux/bpf_common.h).
const ALU32_MOV_K: u8 = 0x04 | 0xb0;
const ALU32_AND_K: u8 = 0x04 | 0x50;
const ALU32_SUB_X: u8 = 0x04 | 0x10 | 0x08;
const ALU64_MOV_X: u8 = 0x07 | 0xb0 | 0x08;
const ALU64_ADD_K: u8 = 0x07;
const ALU64_ADD_X: u8 = 0x07 | 0x08;
const LDX_W: u8 = 0x01 | 0x60;
const LDX_DW: u8 = 0x01 | 0x60 | 0x18;
const STX_DW: u8 = 0x03 | 0x60 | 0x18;
const ST_W: u8 = 0x02 | 0x60;
const LD_IMM64: u8 = 0x18;
const JMP_JA: u8 = 0x05;
const JMP_JEQ_K: u8 = 0x05 | 0x10;
const JMP32_JEQ_K: u8 = 0x06 | 0x10;
const JMP32_JGE_K: u8 = 0x06 | 0x30;
const JMP32_JNE_K: u8 = 0x06 | 0x50;
const JMP_CALL: u8 = 0x05 | 0x80;
const JMP_EXIT: u8 = 0x05 | 0x90;
/// `BPF_PSEUDO_MAP_FD`: the 64-bit immediate is a map's descriptor.
const PSEUDO_MAP_FD: u8 = 1;
/// `BPF_FUNC_map_lookup_elem`.
const HELPER_MAP_LOOKUP: i32 = 1;

/// `offsetof(struct __sk_buff, ...)`, fixed by the kernel's ABI.
const SKB_LEN: i16 = 0;
const SKB_PKT_TYPE: i16 = 4;
const SKB_GSO_SEGS: i16 = 164;

// Registers.
const A: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const CTX: u8 = 6;
const X: u8 = 7;
const SEGS: u8 = 8;
const VERDICT: u8 = 9;
const FP: u8 = 10;

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInsn {
    EbpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// Where a translated jump goes, resolved once every instruction's place is known.
#[derive(Clone, Copy)]
enum Target {
    /// The translation of this classic instruction.
    Classic(usize),
    /// The counting epilogue.
    Count,
}

/// Translates `prog` into an eBPF socket filter that counts what it accepts in the
/// one-entry per-CPU array `map_fd` (key 0, value [`TakenCounts`]).
pub fn translate(prog: &[Insn], map_fd: i32) -> Result<Vec<EbpfInsn>, TranslateError> {
    // Pass 1: each classic instruction's eBPF code, with jumps still symbolic.
    let mut out: Vec<(EbpfInsn, Option<Target>)> = vec![
        (ins(ALU64_MOV_X, CTX, R1, 0, 0), None),
        (ins(ALU32_MOV_K, A, 0, 0, 0), None),
        (ins(ALU32_MOV_K, X, 0, 0, 0), None),
    ];
    let mut start = vec![0; prog.len()];
    let target = |index: usize, skip: usize| -> Result<Target, TranslateError> {
        let to = index + 1 + skip;
        if to < prog.len() {
            Ok(Target::Classic(to))
        } else {
            Err(TranslateError::JumpOutside { index })
        }
    };
    let live = reachable(prog);
    for (index, i) in prog.iter().enumerate() {
        // The verifier refuses code no path reaches; classic BPF has some (a table's
        // shared drop after a block that always returns), so it is left out.
        if !live[index] {
            continue;
        }
        start[index] = out.len();
        let unsupported = || TranslateError::Unsupported {
            index,
            code: i.code,
            k: i.k,
        };
        let k = i.k as i32;
        match i.code {
            classic::LD_B_ABS if i.k == classic::AD_PKTTYPE => {
                out.push((ins(LDX_W, A, CTX, SKB_PKT_TYPE, 0), None));
            }
            classic::LD_W_ABS | classic::LD_H_ABS | classic::LD_B_ABS if k >= 0 => {
                out.push((ins(i.code as u8, 0, 0, 0, k), None));
            }
            classic::LD_W_IND | classic::LD_H_IND | classic::LD_B_IND if k >= 0 => {
                out.push((ins(i.code as u8, 0, X, 0, k), None));
            }
            classic::AND_K => out.push((ins(ALU32_AND_K, A, 0, 0, k), None)),
            classic::SUB_X => out.push((ins(ALU32_SUB_X, A, X, 0, 0), None)),
            classic::LDX_IMM => out.push((ins(ALU32_MOV_K, X, 0, 0, k), None)),
            classic::LD_W_LEN => out.push((ins(LDX_W, A, CTX, SKB_LEN, 0), None)),
            classic::JEQ_K | classic::JGE_K => {
                let op = if i.code == classic::JEQ_K {
                    JMP32_JEQ_K
                } else {
                    JMP32_JGE_K
                };
                out.push((ins(op, A, 0, 0, k), Some(target(index, usize::from(i.jt))?)));
                if i.jf != 0 {
                    out.push((
                        ins(JMP_JA, 0, 0, 0, 0),
                        Some(target(index, usize::from(i.jf))?),
                    ));
                }
            }
            classic::JA => out.push((ins(JMP_JA, 0, 0, 0, 0), Some(target(index, i.k as usize)?))),
            classic::RET_K if i.k == 0 => {
                out.push((ins(ALU32_MOV_K, A, 0, 0, 0), None));
                out.push((ins(JMP_EXIT, 0, 0, 0, 0), None));
            }
            classic::RET_K => {
                out.push((ins(ALU32_MOV_K, VERDICT, 0, 0, k), None));
                out.push((ins(JMP_JA, 0, 0, 0, 0), Some(Target::Count)));
            }
            _ => return Err(unsupported()),
        }
    }
    let count_at = out.len();
    // Pass 2: resolve the jumps (offsets count from the next instruction).
    let mut code: Vec<EbpfInsn> = out
        .iter()
        .enumerate()
        .map(|(at, (insn, to))| {
            let mut insn = *insn;
            if let Some(to) = to {
                let to = match to {
                    Target::Classic(c) => start[*c],
                    Target::Count => count_at,
                };
                insn.off = (to as i64 - at as i64 - 1) as i16;
            }
            insn
        })
        .collect();
    code.extend(count_epilogue(map_fd));
    Ok(code)
}

/// Which instructions some path from the first one reaches.
fn reachable(prog: &[Insn]) -> Vec<bool> {
    let mut live = vec![false; prog.len()];
    let mut todo = vec![0usize];
    while let Some(at) = todo.pop() {
        if at >= prog.len() || live[at] {
            continue;
        }
        live[at] = true;
        let i = prog[at];
        let next = at + 1;
        match i.code {
            classic::RET_K => {}
            classic::JA => todo.push(next + i.k as usize),
            classic::JEQ_K | classic::JGE_K => {
                todo.push(next + usize::from(i.jt));
                todo.push(next + usize::from(i.jf));
            }
            _ => todo.push(next),
        }
    }
    live
}

/// Adds the frame (and its `gso_segs` datagrams, at least one) to the CPU's counts, then
/// returns the verdict in R9.
fn count_epilogue(map_fd: i32) -> [EbpfInsn; 18] {
    [
        ins(LDX_W, SEGS, CTX, SKB_GSO_SEGS, 0),
        // A frame that is not a super-frame has gso_segs 0.
        ins(JMP32_JNE_K, SEGS, 0, 1, 0),
        ins(ALU32_MOV_K, SEGS, 0, 0, 1),
        // The key (0) on the stack.
        ins(ST_W, FP, 0, -4, 0),
        ins(LD_IMM64, R1, PSEUDO_MAP_FD, 0, map_fd),
        ins(0, 0, 0, 0, 0),
        ins(ALU64_MOV_X, R2, FP, 0, 0),
        ins(ALU64_ADD_K, R2, 0, 0, -4),
        ins(JMP_CALL, 0, 0, 0, HELPER_MAP_LOOKUP),
        // An array's entry 0 always exists; the verifier wants the check anyway.
        ins(JMP_JEQ_K, A, 0, 6, 0),
        // Per-CPU values, and socket filters run with bottom halves off: no other writer.
        ins(LDX_DW, R1, A, 0, 0),
        ins(ALU64_ADD_K, R1, 0, 0, 1),
        ins(STX_DW, A, R1, 0, 0),
        ins(LDX_DW, R1, A, 8, 0),
        ins(ALU64_ADD_X, R1, SEGS, 0, 0),
        ins(STX_DW, A, R1, 8, 0),
        ins(ALU64_MOV_X, A, VERDICT, 0, 0),
        ins(JMP_EXIT, 0, 0, 0, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::bpf;

    #[test]
    fn every_instruction_the_filter_emits_translates() {
        let groups = ["239.1.1.1".parse().unwrap(), "ff3e::1".parse().unwrap()];
        let kernel = [("239.2.2.2".parse().unwrap(), 5000)];
        let classic = bpf::build(&groups, &kernel);
        let ebpf = translate(&classic, 3).unwrap();
        assert!(ebpf.len() > classic.len());
        assert_eq!(ebpf.last().unwrap().code, JMP_EXIT);
    }

    #[test]
    fn jumps_land_on_the_translation_of_their_target() {
        // 0: ld pkttype; 1: jeq 4 ? 2 : 3; 2: ret 0; 3: ret 0x40000
        let classic = [
            bpf::insn(classic::LD_B_ABS, 0, 0, classic::AD_PKTTYPE),
            bpf::insn(classic::JEQ_K, 0, 1, 4),
            bpf::insn(classic::RET_K, 0, 0, 0),
            bpf::insn(classic::RET_K, 0, 0, 0x40000),
        ];
        let e = translate(&classic, 3).unwrap();
        // 3 prologue, ldxw, jeq (to 2: next), ja (to 3), mov r0 0, exit, mov r9, ja count.
        assert_eq!(e[4].code, JMP32_JEQ_K);
        assert_eq!(e[4].off, 1, "jt 0 is the next classic instruction (ret 0)");
        assert_eq!(e[5].code, JMP_JA);
        assert_eq!(e[5].off, 2, "jf 1 skips the two instructions of ret 0");
        assert_eq!(e[9].code, JMP_JA);
        assert_eq!(e[9].off, 0, "the accepting return falls into the epilogue");
    }

    #[test]
    fn code_no_path_reaches_is_left_out() {
        // 0: ja 1; 1: ret 0 (unreachable); 2: ret 0x40000
        let classic = [
            bpf::insn(classic::JA, 0, 0, 1),
            bpf::insn(classic::RET_K, 0, 0, 0),
            bpf::insn(classic::RET_K, 0, 0, 0x40000),
        ];
        let e = translate(&classic, 3).unwrap();
        // 3 prologue, ja, mov r9, ja count, then the epilogue.
        assert_eq!(e.len(), 3 + 3 + 18);
        assert_eq!(e[3].off, 0, "the jump lands on the accepting return");
    }

    #[test]
    fn instructions_the_filter_never_emits_are_refused_by_name() {
        let classic = [bpf::insn(0x87, 0, 0, 0)];
        assert_eq!(
            translate(&classic, 3),
            Err(TranslateError::Unsupported {
                index: 0,
                code: 0x87,
                k: 0
            })
        );
        let classic = [bpf::insn(classic::JA, 0, 0, 5)];
        assert_eq!(
            translate(&classic, 3),
            Err(TranslateError::JumpOutside { index: 0 })
        );
        // Other ancillary loads (negative offsets) are not the packet type.
        let classic = [bpf::insn(classic::LD_W_ABS, 0, 0, (-0x1000i32) as u32)];
        assert!(translate(&classic, 3).is_err());
    }
}
