//! The paravirtual clock ABI that KVM shares with its guests (kvmclock): the
//! per-vCPU time record the guest reads, the wall-clock record, the fixed-point
//! scale that turns TSC cycles into nanoseconds, and the KVM paravirtual CPUID
//! leaves. Layouts and bit numbers are from Linux's pvclock-abi.h and
//! Documentation/virt/kvm/x86/{msr,cpuid}.rst.
//!
//! A guest computes the time as
//! `system_time + scale_delta(rdtsc() - tsc_timestamp, mul, shift)`; KVM fills
//! the record so that this equals the VM clock (KVM_GET_CLOCK) at any instant.

/// `struct pvclock_vcpu_time_info` (32 bytes). `version` is odd while KVM
/// rewrites the record; the guest retries until it reads the same even value
/// before and after.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad: [u8; 2],
}

/// `struct pvclock_wall_clock` (12 bytes): the wall-clock time at which the
/// VM clock read 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WallClock {
    pub version: u32,
    pub sec: u32,
    pub nsec: u32,
}

/// `flags`: every vCPU's record describes the same clock (the TSCs are
/// synchronized), so the guest need not keep its own monotonic fix-up.
pub const TSC_STABLE_BIT: u8 = 1 << 0;

impl VcpuTimeInfo {
    /// The record as the guest sees it in memory (little endian).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&self.version.to_le_bytes());
        b[8..16].copy_from_slice(&self.tsc_timestamp.to_le_bytes());
        b[16..24].copy_from_slice(&self.system_time.to_le_bytes());
        b[24..28].copy_from_slice(&self.tsc_to_system_mul.to_le_bytes());
        b[28] = self.tsc_shift as u8;
        b[29] = self.flags;
        b
    }

    /// The time in nanoseconds this record gives at TSC value `tsc`, as the
    /// guest computes it.
    pub fn read(&self, tsc: u64) -> u64 {
        self.system_time
            .wrapping_add(scale_delta(tsc.wrapping_sub(self.tsc_timestamp), self.tsc_to_system_mul, self.tsc_shift))
    }
}

impl WallClock {
    /// The record as the guest sees it in memory (little endian).
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.version.to_le_bytes());
        b[4..8].copy_from_slice(&self.sec.to_le_bytes());
        b[8..12].copy_from_slice(&self.nsec.to_le_bytes());
        b
    }
}

/// The guest's conversion: `((delta << shift) * mul) >> 32` (a right shift
/// for a negative `shift`), with a 128-bit product.
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift < 0 { delta >> (-(shift as i32)).min(63) } else { delta << (shift as u32).min(63) };
    ((d as u128 * mul as u128) >> 32) as u64
}

/// The `(mul, shift)` pair that turns ticks of a `from_hz` clock into ticks of
/// a `to_hz` one with [`scale_delta`]: `mul / 2^32 * 2^shift = to_hz / from_hz`,
/// with `mul` in [2^31, 2^32) for the most precision. Both rates must be
/// non-zero and below 2^62 Hz. Only 64-bit divisions (no 128-bit division
/// helper exists in the kernel).
pub fn time_scale(to_hz: u64, from_hz: u64) -> (u32, i8) {
    let (to_hz, from_hz) = (to_hz.clamp(1, 1 << 62), from_hz.clamp(1, 1 << 62));
    // Pick shift so that to_hz / (from_hz * 2^shift) falls in [1/2, 1).
    let mut shift: i32 = 0;
    while from_hz_scaled(from_hz, shift) <= to_hz as u128 {
        shift += 1;
    }
    while from_hz_scaled(from_hz, shift - 1) > to_hz as u128 {
        shift -= 1;
    }
    // mul = to_hz * 2^32 / (from_hz * 2^shift) = (to_hz << (32 - shift)) / from_hz.
    let mul = if shift >= 0 {
        // from_hz << shift <= 2 * to_hz < 2^63: fits.
        frac_div(to_hz, from_hz << shift, 32)
    } else {
        frac_div(to_hz, from_hz, 32 + (-shift) as u32)
    };
    (mul.min(u32::MAX as u64) as u32, shift as i8)
}

/// `from_hz * 2^shift` exactly (as a 128-bit value, shift in [-64, 64]).
fn from_hz_scaled(from_hz: u64, shift: i32) -> u128 {
    if shift >= 0 {
        (from_hz as u128) << shift.min(64)
    } else {
        (from_hz >> (-shift).min(63)) as u128
    }
}

/// `(a << bits) / b` for `a < b < 2^63` whose result fits in 64 bits, by
/// long division one bit at a time (the remainder stays below `b`, so no step
/// overflows).
fn frac_div(a: u64, b: u64, bits: u32) -> u64 {
    let (mut q, mut r) = (0u64, a);
    for _ in 0..bits {
        r <<= 1;
        q <<= 1;
        if r >= b {
            r -= b;
            q |= 1;
        }
    }
    q
}

/// CPUID 0x4000_0000: the hypervisor signature leaf ("KVMKVMKVM\0\0\0" in EBX,
/// ECX, EDX) and the highest KVM leaf in EAX.
pub const CPUID_SIGNATURE: u32 = 0x4000_0000;
/// CPUID 0x4000_0001: EAX holds the paravirtual features.
pub const CPUID_FEATURES: u32 = 0x4000_0001;
/// "KVMK", "VMKV", "M\0\0\0" as EBX, ECX, EDX.
pub const SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];

/// KVM_FEATURE_* bit numbers in CPUID 0x4000_0001 EAX.
pub mod feature {
    /// kvmclock at MSRs 0x11/0x12.
    pub const CLOCKSOURCE: u32 = 0;
    /// Port 0x80 delays are unnecessary.
    pub const NOP_IO_DELAY: u32 = 1;
    /// kvmclock at MSRs 0x4b564d00/01.
    pub const CLOCKSOURCE2: u32 = 3;
    /// Asynchronous page faults (MSR_KVM_ASYNC_PF_EN).
    pub const ASYNC_PF: u32 = 4;
    /// Steal time (MSR_KVM_STEAL_TIME).
    pub const STEAL_TIME: u32 = 5;
    /// Paravirtual EOI (MSR_KVM_PV_EOI_EN).
    pub const PV_EOI: u32 = 6;
    /// KVM_HC_KICK_CPU wakes a halted vCPU.
    pub const PV_UNHALT: u32 = 7;
    /// KVM_HC_SEND_IPI.
    pub const PV_SEND_IPI: u32 = 11;
    /// MSR_KVM_POLL_CONTROL.
    pub const POLL_CONTROL: u32 = 12;
    /// KVM_HC_SCHED_YIELD.
    pub const PV_SCHED_YIELD: u32 = 13;
    /// Asynchronous page faults delivered as interrupts (MSR_KVM_ASYNC_PF_INT/ACK).
    pub const ASYNC_PF_INT: u32 = 14;
    /// PVCLOCK_TSC_STABLE_BIT may be set in the records.
    pub const CLOCKSOURCE_STABLE_BIT: u32 = 24;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(to: u64, from: u64) {
        let (mul, shift) = time_scale(to, from);
        assert!(mul >= 1 << 31, "mul {mul:#x} for {to}/{from} is not normalized");
        // One second of `from` ticks must give `to` ticks within 1 ppm.
        let got = scale_delta(from, mul, shift) as i128;
        let err = (got - to as i128).abs();
        assert!(err * 1_000_000 <= to as i128, "{from} ticks -> {got}, want {to} (mul {mul:#x} shift {shift})");
    }

    #[test]
    fn tsc_rates_scale_to_nanoseconds() {
        for hz in [1_000_000u64, 999_999_999, 1_000_000_000, 1_000_000_001, 2_495_312_000, 3_000_000_000, 4_294_967_296, 5_800_000_000, 12_000_000_000] {
            check(1_000_000_000, hz);
        }
    }

    #[test]
    fn nanoseconds_scale_to_tsc_rates() {
        for hz in [1_000_000_000u64, 2_495_312_000, 3_700_000_000] {
            check(hz, 1_000_000_000);
        }
    }

    #[test]
    fn exact_for_one_ghz() {
        assert_eq!(time_scale(1_000_000_000, 1_000_000_000), (1 << 31, 1));
        assert_eq!(scale_delta(12345, 1 << 31, 1), 12345);
    }

    #[test]
    fn random_rates_stay_within_a_ppm() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let hz = 1_000_000 + x % 20_000_000_000;
            check(1_000_000_000, hz);
        }
    }

    #[test]
    fn record_reads_as_the_guest_computes() {
        let (mul, shift) = time_scale(1_000_000_000, 2_000_000_000);
        let r = VcpuTimeInfo { tsc_timestamp: 1000, system_time: 5_000, tsc_to_system_mul: mul, tsc_shift: shift, ..Default::default() };
        assert_eq!(r.read(1000), 5_000);
        let t = r.read(1000 + 2_000_000_000);
        assert!((t as i64 - 1_000_005_000).abs() <= 1, "{t}");
        let b = r.to_bytes();
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 1000);
        assert_eq!(b[28] as i8, shift);
    }

    #[test]
    fn signature_spells_kvm() {
        let mut s = [0u8; 12];
        for (i, w) in SIGNATURE.iter().enumerate() {
            s[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        assert_eq!(&s, b"KVMKVMKVM\0\0\0");
    }
}
