// SPDX-License-Identifier: GPL-2.0
//! The guest TSC (upstream's kvm_synchronize_tsc, kvm_set_tsc_khz and the
//! IA32_TSC / IA32_TSC_ADJUST MSRs).
//!
//! A vCPU's TSC is the host TSC plus its offset (ArchState::tsc_offset); the
//! rate is the host's, since neither SVM's TSC ratio MSR nor VMX's TSC
//! multiplier is used. vCPUs created together get the same offset, so their
//! TSCs start at 0 and stay in step; a host write of IA32_TSC within a second
//! of the value the previous write predicts is taken as meant to be the same
//! TSC (upstream's one-second window for VMMs that write each vCPU in turn).

use super::vm_clock::{boottime_ns, host_tsc_stable};
use crate::irq::sys;
use crate::vcpu::{Vcpu, VcpuInner};
use core::sync::atomic::Ordering;
use kernel::prelude::*;


/// The VM's record of TSC writes (upstream's last_tsc_* and cur_tsc_*).
pub(crate) struct TscSync {
    /// Boot time of the last write, the value written and the rate then.
    last_ns: u64,
    last_write: u64,
    last_khz: u32,
    /// The offset the last write gave (KVM_VCPU_TSC_OFFSET matches on it).
    last_offset: u64,
    /// The offset of the current generation of matched writes.
    cur_offset: u64,
    /// A VMM has written IA32_TSC (enables the one-second window).
    user_set: bool,
    /// KVM_SET_TSC_KHZ on the VM: the rate new vCPUs get.
    pub(crate) default_khz: u32,
}

impl TscSync {
    pub(crate) fn new() -> Self {
        TscSync { last_ns: 0, last_write: 0, last_khz: 0, last_offset: 0, cur_offset: 0, user_set: false, default_khz: sys::tsc_khz() }
    }

    /// The offset for a vCPU at rate `khz` whose TSC is to read `value` now
    /// (None: vCPU creation, which means 0 and always synchronizes).
    pub(crate) fn synchronize(&mut self, khz: u32, value: Option<u64>) -> u64 {
        let data = value.unwrap_or(0);
        let mut offset = data.wrapping_sub(sys::rdtsc());
        let ns = boottime_ns();
        let elapsed = ns.wrapping_sub(self.last_ns);
        let hz = khz as u64 * 1000;
        let synchronizing = khz != 0
            && (data == 0
                || (self.user_set && {
                    let expected = self.last_write.wrapping_add(ns_to_cycles(elapsed, khz));
                    data < expected.saturating_add(hz) && data.saturating_add(hz) > expected
                }));
        if value.is_some() {
            self.user_set = true;
        }
        let mut written = data;
        let matched = synchronizing && khz == self.last_khz;
        if matched {
            if host_tsc_stable() {
                offset = self.cur_offset;
            } else {
                written = data.wrapping_add(ns_to_cycles(elapsed, khz));
                offset = written.wrapping_sub(sys::rdtsc());
            }
        }
        self.last_ns = ns;
        self.last_write = written;
        self.last_khz = khz;
        self.last_offset = offset;
        if !matched {
            self.cur_offset = offset;
        }
        offset
    }

    /// KVM_VCPU_TSC_OFFSET set for a vCPU at rate `khz` (upstream's
    /// kvm_arch_tsc_set_attr): the offset is taken as is; it starts a new
    /// generation of matched writes unless it is the offset the last write
    /// gave at the same rate.
    fn set_offset(&mut self, khz: u32, offset: u64) {
        let matched = khz != 0 && self.last_khz == khz && self.last_offset == offset;
        self.user_set = true;
        self.last_ns = boottime_ns();
        self.last_write = sys::rdtsc().wrapping_add(offset);
        self.last_khz = khz;
        self.last_offset = offset;
        if !matched {
            self.cur_offset = offset;
        }
    }
}

/// TSC cycles at `khz` in `ns` nanoseconds.
fn ns_to_cycles(ns: u64, khz: u32) -> u64 {
    match ns.checked_mul(khz as u64) {
        Some(p) => p / 1_000_000,
        None => (ns / 1_000_000).saturating_mul(khz as u64),
    }
}

/// A vCPU's TSC state besides its offset.
#[derive(Clone, Copy)]
pub(crate) struct VcpuTsc {
    /// The rate KVM_GET_TSC_KHZ reports (upstream's virtual_tsc_khz).
    pub(crate) khz: u32,
    /// IA32_TSC_ADJUST.
    adjust: u64,
}

impl VcpuTsc {
    pub(crate) fn new(khz: u32) -> Self {
        VcpuTsc { khz, adjust: 0 }
    }
}

/// Sets the vCPU's TSC offset; its kvmclock record and the APIC's TSC-deadline
/// arithmetic follow.
pub(crate) fn set_offset(vcpu: &Vcpu, inner: &mut VcpuInner, offset: u64) {
    inner.state.tsc_offset = offset;
    vcpu.shared.irq.tsc_offset.store(offset, Ordering::Relaxed);
    super::kvmclock::request_update(&vcpu.shared);
}

/// The initial offset of a new vCPU (upstream's kvm_synchronize_tsc(vcpu, NULL)).
pub(crate) fn initial_offset(vcpu_vm: &crate::vm::Vm, khz: u32) -> u64 {
    vcpu_vm.tsc.lock().synchronize(khz, None)
}

/// Reads IA32_TSC / IA32_TSC_ADJUST; None for other MSRs.
pub(crate) fn get_msr(inner: &VcpuInner, index: u32) -> Option<Result<u64>> {
    match index {
        crate::arch::msr::IA32_TSC => Some(Ok(sys::rdtsc().wrapping_add(inner.state.tsc_offset))),
        crate::arch::msr::IA32_TSC_ADJUST => Some(Ok(inner.tsc.adjust)),
        _ => None,
    }
}

/// Writes IA32_TSC / IA32_TSC_ADJUST as upstream: a host write of IA32_TSC
/// synchronizes with the other vCPUs; a guest write moves the offset and
/// IA32_TSC_ADJUST by the same amount; IA32_TSC_ADJUST exists only if the
/// guest's CPUID has it (otherwise writes are ignored).
pub(crate) fn set_msr(vcpu: &Vcpu, inner: &mut VcpuInner, index: u32, value: u64, host: bool) -> Option<Result> {
    match index {
        crate::arch::msr::IA32_TSC => {
            if host {
                let offset = vcpu.vm.tsc.lock().synchronize(inner.tsc.khz, Some(value));
                set_offset(vcpu, inner, offset);
            } else {
                let offset = value.wrapping_sub(sys::rdtsc());
                let adj = offset.wrapping_sub(inner.state.tsc_offset);
                inner.tsc.adjust = inner.tsc.adjust.wrapping_add(adj);
                set_offset(vcpu, inner, offset);
            }
            Some(Ok(()))
        }
        crate::arch::msr::IA32_TSC_ADJUST => {
            if crate::cpuid::guest_has_tsc_adjust(&inner.cpuid) {
                if !host {
                    let adj = value.wrapping_sub(inner.tsc.adjust);
                    let offset = inner.state.tsc_offset.wrapping_add(adj);
                    set_offset(vcpu, inner, offset);
                }
                inner.tsc.adjust = value;
            }
            Some(Ok(()))
        }
        _ => None,
    }
}

/// The bounds of a rate within the tolerance of `khz` (upstream's adjust_tsc_khz).
fn within_tolerance(requested: u32, khz: u32) -> bool {
    // kvm's tsc_tolerance_ppm: a requested rate this close to the host's
    // needs no scaling.
    let k = khz as u64;
    let ppm = crate::params::tsc_tolerance_ppm().min(1_000_000);
    let lo = k * (1_000_000 - ppm) / 1_000_000;
    let hi = k * (1_000_000 + ppm) / 1_000_000;
    (lo..=hi).contains(&(requested as u64))
}

/// KVM_SET_TSC_KHZ on a vCPU. Without TSC scaling a rate within tsc_tolerance_ppm of the
/// host's is taken as the host's; a slower one is refused (EINVAL) as
/// upstream; a faster one upstream emulates by catching the TSC up at each
/// entry, which is not implemented here: refused with EINVAL and a line in
/// dmesg. As upstream, the rate reported by KVM_GET_TSC_KHZ is the one
/// requested even when refused.
pub(crate) fn set_tsc_khz(inner: &mut VcpuInner, arg: usize) -> Result<isize> {
    let host = sys::tsc_khz();
    let requested = if arg as u32 == 0 { host } else { arg as u32 };
    if requested == 0 {
        return Err(EINVAL);
    }
    inner.tsc.khz = requested;
    if within_tolerance(requested, host) {
        return Ok(0);
    }
    if requested > host {
        pr_info!("KVM_SET_TSC_KHZ {} kHz: faster than the host TSC ({} kHz) needs TSC scaling or catch-up, not supported\n", requested, host);
    }
    Err(EINVAL)
}

/// KVM_SET_TSC_KHZ on the VM: the rate of vCPUs created afterwards.
pub(crate) fn set_default_khz(vm: &crate::vm::Vm, arg: usize) -> Result<isize> {
    let requested = if arg as u32 == 0 { sys::tsc_khz() } else { arg as u32 };
    vm.tsc.lock().default_khz = requested;
    Ok(0)
}

/// KVM_HAS/GET/SET_DEVICE_ATTR on a vCPU (upstream's
/// kvm_vcpu_ioctl_device_attr): group KVM_VCPU_TSC_CTRL has one attribute,
/// KVM_VCPU_TSC_OFFSET, the vCPU's TSC offset (a u64 at `addr`), which lets
/// a VMM save and restore guest TSCs without the drift of IA32_TSC writes.
/// Other groups and attributes: ENXIO.
pub(crate) fn vcpu_device_attr(vcpu: &Vcpu, inner: &mut VcpuInner, cmd: u32, arg: usize) -> Result<isize> {
    use crate::uapi::{self, ioctl};
    let attr: uapi::kvm_device_attr = crate::user::read(arg)?;
    if attr.group != uapi::KVM_VCPU_TSC_CTRL || attr.attr != uapi::KVM_VCPU_TSC_OFFSET as u64 {
        return Err(ENXIO);
    }
    match cmd {
        ioctl::KVM_HAS_DEVICE_ATTR => {}
        ioctl::KVM_GET_DEVICE_ATTR => crate::user::write(attr.addr as usize, &inner.state.tsc_offset)?,
        _ => {
            let offset: u64 = crate::user::read(attr.addr as usize)?;
            vcpu.vm.tsc.lock().set_offset(inner.tsc.khz, offset);
            set_offset(vcpu, inner, offset);
        }
    }
    Ok(0)
}
