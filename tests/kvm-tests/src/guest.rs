//! Setting up VMs and vCPUs and running small hand-assembled guests, as a
//! minimal VMM does.

use crate::kvm::*;
use kvm_uapi::ioctl::*;
use kvm_uapi::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Vm {
    pub kvm: OwnedFd,
    pub fd: OwnedFd,
    pub mems: Vec<(*mut u8, usize)>,
}

// SAFETY: the raw pointers are the VM's own mappings; a VMM hands vCPUs and
// their mappings to threads the same way.
unsafe impl Send for Vm {}
// SAFETY: as above.
unsafe impl Send for Vcpu {}

pub struct Vcpu {
    pub fd: OwnedFd,
    pub run: *mut kvm_run,
    pub map: *mut u8,
    pub map_size: usize,
}

fn err<T>(what: &str, e: Errno) -> Result<T, String> {
    Err(format!("{what}: errno {e} ({})", std::io::Error::from_raw_os_error(e)))
}

impl Vm {
    pub fn new() -> Result<Vm, String> {
        let kvm = open_kvm()?;
        let fd = match ioctl_val(&kvm, KVM_CREATE_VM, 0) {
            Ok(fd) => fd as i32,
            Err(e) => return err("KVM_CREATE_VM", e),
        };
        // SAFETY: a fresh descriptor returned by the kernel.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Vm { kvm, fd, mems: vec![] })
    }

    /// Anonymous memory of `size` bytes as slot `slot` at `gpa`.
    pub fn add_mem(&mut self, slot: u32, gpa: u64, size: usize, flags: u32) -> Result<*mut u8, String> {
        let p = anon(size)?;
        self.set_region(slot, gpa, size as u64, p as u64, flags).or_else(|e| err("SET_USER_MEMORY_REGION", e))?;
        self.mems.push((p, size));
        Ok(p)
    }

    pub fn set_region(&self, slot: u32, gpa: u64, size: u64, hva: u64, flags: u32) -> Result<i64, Errno> {
        let mut r = kvm_userspace_memory_region { slot, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: hva };
        ioctl_ptr(&self.fd, KVM_SET_USER_MEMORY_REGION, &mut r)
    }

    /// Closes the VM file (its descriptor number then refers to /dev/null).
    pub fn close_vm_file(&mut self) {
        // SAFETY: dup2 atomically drops our reference to the VM file.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            libc::dup2(null, self.fd.as_raw_fd());
            libc::close(null);
        }
    }

    pub fn vcpu(&self, id: u64) -> Result<Vcpu, String> {
        let fd = match ioctl_val(&self.fd, KVM_CREATE_VCPU, id) {
            Ok(fd) => fd as i32,
            Err(e) => return err("KVM_CREATE_VCPU", e),
        };
        // SAFETY: a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = ioctl_val(&self.kvm, KVM_GET_VCPU_MMAP_SIZE, 0).or_else(|e| err("MMAP_SIZE", e))? as usize;
        // SAFETY: maps the vCPU file as the KVM API documents.
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        if map == libc::MAP_FAILED {
            return Err(format!("mmap vcpu: {}", std::io::Error::last_os_error()));
        }
        Ok(Vcpu { fd, run: map as *mut kvm_run, map: map as *mut u8, map_size: size })
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        for (p, n) in &self.mems {
            // SAFETY: mappings made by `anon`.
            unsafe { libc::munmap(*p as *mut _, *n) };
        }
    }
}

impl Drop for Vcpu {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Vm::vcpu`.
        unsafe { libc::munmap(self.map as *mut _, self.map_size) };
    }
}

pub fn anon(size: usize) -> Result<*mut u8, String> {
    // SAFETY: an anonymous private mapping.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    Ok(p as *mut u8)
}

/// Copies `bytes` into guest memory mapped at `base`, at offset `off`.
pub fn poke(base: *mut u8, off: usize, bytes: &[u8]) {
    // SAFETY: callers pass offsets inside the mapping they created.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(off), bytes.len()) };
}

pub fn peek(base: *mut u8, off: usize, n: usize) -> Vec<u8> {
    // SAFETY: as for `poke`.
    unsafe { std::slice::from_raw_parts(base.add(off), n).to_vec() }
}

/// The fields of the exit union, read as the KVM ABI lays them out.
pub struct Io {
    pub input: bool,
    pub size: u8,
    pub port: u16,
    pub count: u32,
    pub data_offset: u64,
}

pub struct Mmio {
    pub addr: u64,
    pub data: [u8; 8],
    pub len: u32,
    pub is_write: bool,
}

impl Vcpu {
    fn exit_union(&self) -> *mut u8 {
        // SAFETY: offset 32 of the mapped kvm_run is the exit union.
        unsafe { (self.run as *mut u8).add(32) }
    }

    pub fn run(&self) -> Result<u32, Errno> {
        ioctl_val(&self.fd, KVM_RUN, 0)?;
        Ok(self.exit_reason())
    }

    pub fn exit_reason(&self) -> u32 {
        // SAFETY: the mapped kvm_run page.
        unsafe { std::ptr::addr_of!((*self.run).exit_reason).read_volatile() }
    }

    pub fn set_immediate_exit(&self, v: u8) {
        // SAFETY: the mapped kvm_run page.
        unsafe { std::ptr::addr_of_mut!((*self.run).immediate_exit).write_volatile(v) }
    }

    pub fn io(&self) -> Io {
        let u = self.exit_union();
        // SAFETY: reading the io member of the union (fixed ABI offsets).
        unsafe {
            Io {
                input: *u == 0,
                size: *u.add(1),
                port: u.add(2).cast::<u16>().read_unaligned(),
                count: u.add(4).cast::<u32>().read_unaligned(),
                data_offset: u.add(8).cast::<u64>().read_unaligned(),
            }
        }
    }

    /// The PIO data area of the last KVM_EXIT_IO.
    pub fn io_data(&self) -> &mut [u8] {
        let io = self.io();
        let n = io.size as usize * io.count as usize;
        // SAFETY: data_offset + n lies within the vCPU mapping (checked).
        unsafe {
            assert!(io.data_offset as usize + n <= self.map_size);
            std::slice::from_raw_parts_mut(self.map.add(io.data_offset as usize), n)
        }
    }

    pub fn mmio(&self) -> Mmio {
        let u = self.exit_union();
        // SAFETY: the mmio member of the union.
        unsafe {
            let mut data = [0u8; 8];
            std::ptr::copy_nonoverlapping(u.add(8), data.as_mut_ptr(), 8);
            Mmio {
                addr: u.cast::<u64>().read_unaligned(),
                data,
                len: u.add(16).cast::<u32>().read_unaligned(),
                is_write: *u.add(20) != 0,
            }
        }
    }

    pub fn set_mmio_data(&self, data: &[u8]) {
        // SAFETY: the 8-byte data field of the mmio member.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.exit_union().add(8), data.len().min(8)) };
    }

    /// `internal.suberror` of KVM_EXIT_INTERNAL_ERROR / `fail_entry` reason.
    pub fn exit_u64(&self, idx: usize) -> u64 {
        // SAFETY: within the 256-byte union.
        unsafe { self.exit_union().add(8 * idx).cast::<u64>().read_unaligned() }
    }

    pub fn regs(&self) -> Result<kvm_regs, String> {
        let mut r = kvm_regs::default();
        ioctl_ptr(&self.fd, KVM_GET_REGS, &mut r).or_else(|e| err("GET_REGS", e))?;
        Ok(r)
    }

    pub fn set_regs(&self, r: &kvm_regs) -> Result<(), String> {
        let mut r = *r;
        ioctl_ptr(&self.fd, KVM_SET_REGS, &mut r).or_else(|e| err("SET_REGS", e))?;
        Ok(())
    }

    pub fn sregs(&self) -> Result<kvm_sregs, String> {
        let mut s = kvm_sregs::default();
        ioctl_ptr(&self.fd, KVM_GET_SREGS, &mut s).or_else(|e| err("GET_SREGS", e))?;
        Ok(s)
    }

    pub fn set_sregs(&self, s: &kvm_sregs) -> Result<i64, Errno> {
        let mut s = *s;
        ioctl_ptr(&self.fd, KVM_SET_SREGS, &mut s)
    }

    /// Gives the vCPU the supported CPUID (as VMMs do).
    pub fn set_supported_cpuid(&self, kvm: &OwnedFd) -> Result<(), String> {
        let mut c = Cpuid2::with_room(256);
        ioctl_ptr(kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).or_else(|e| err("GET_SUPPORTED_CPUID", e))?;
        ioctl_ptr(&self.fd, KVM_SET_CPUID2, c.ptr()).or_else(|e| err("SET_CPUID2", e))?;
        Ok(())
    }

    pub fn get_msr(&self, index: u32) -> Result<u64, String> {
        let mut buf = [0u64; 3];
        buf[0] = 1;
        buf[1] = index as u64;
        let n = ioctl_ptr(&self.fd, KVM_GET_MSRS, buf.as_mut_ptr()).or_else(|e| err("GET_MSRS", e))?;
        if n != 1 {
            return Err(format!("GET_MSRS {index:#x} processed {n}"));
        }
        Ok(buf[2])
    }

    pub fn set_msr(&self, index: u32, value: u64) -> Result<i64, Errno> {
        let mut buf = [1u64, index as u64, value];
        ioctl_ptr(&self.fd, KVM_SET_MSRS, buf.as_mut_ptr())
    }

    /// Real mode, CS:IP = 0:`rip`, other segments 0.
    pub fn real_mode_at(&self, rip: u64) -> Result<(), String> {
        let mut s = self.sregs()?;
        s.cs.base = 0;
        s.cs.selector = 0;
        self.set_sregs(&s).or_else(|e| err("SET_SREGS", e))?;
        let mut r = self.regs()?;
        r.rip = rip;
        r.rflags = 2;
        self.set_regs(&r)
    }

    /// Flat 32-bit protected mode without paging; IDT empty (limit 0).
    pub fn protected_mode_at(&self, rip: u64) -> Result<(), String> {
        let mut s = self.sregs()?;
        let code = kvm_segment { base: 0, limit: 0xffff_ffff, selector: 8, type_: 0xb, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0, padding: 0 };
        let data = kvm_segment { selector: 0x10, type_: 3, ..code };
        s.cs = code;
        s.ds = data;
        s.es = data;
        s.fs = data;
        s.gs = data;
        s.ss = data;
        s.cr0 = 0x11;
        s.idt.limit = 0;
        self.set_sregs(&s).or_else(|e| err("SET_SREGS", e))?;
        let mut r = self.regs()?;
        r.rip = rip;
        r.rflags = 2;
        r.rsp = 0x8000;
        self.set_regs(&r)
    }

    /// 64-bit mode with identity-mapped 1G (2M pages; tables at 0x2000..0x5000 of
    /// `mem`, which must be guest-physical 0); IDT empty.
    pub fn long_mode_at(&self, kvm: &OwnedFd, mem: *mut u8, rip: u64) -> Result<(), String> {
        self.set_supported_cpuid(kvm)?;
        poke(mem, 0x2000, &(0x3000u64 | 7).to_le_bytes());
        poke(mem, 0x3000, &(0x4000u64 | 7).to_le_bytes());
        for i in 0..512u64 {
            poke(mem, 0x4000 + 8 * i as usize, &((i << 21) | 0x87).to_le_bytes());
        }
        let mut s = self.sregs()?;
        let code = kvm_segment { base: 0, limit: 0xffff_ffff, selector: 8, type_: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0, padding: 0 };
        let data = kvm_segment { selector: 0x10, type_: 3, l: 0, db: 1, ..code };
        s.cs = code;
        s.ds = data;
        s.es = data;
        s.fs = data;
        s.gs = data;
        s.ss = data;
        s.cr3 = 0x2000;
        s.cr4 = 0x20; // PAE
        s.cr0 = 0x8000_0011;
        s.efer = 0x500; // LME | LMA
        s.idt.limit = 0;
        self.set_sregs(&s).or_else(|e| err("SET_SREGS (long mode)", e))?;
        let mut r = self.regs()?;
        r.rip = rip;
        r.rflags = 2;
        r.rsp = 0x8000;
        self.set_regs(&r)
    }
}

/// A VM with `size` bytes of RAM at 0 (slot 0) and one vCPU.
pub fn vm_with_ram(size: usize) -> Result<(Vm, Vcpu, *mut u8), String> {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, size, 0)?;
    let vcpu = vm.vcpu(0)?;
    Ok((vm, vcpu, mem))
}

pub fn exit_name(r: u32) -> &'static str {
    match r {
        KVM_EXIT_IO => "IO",
        KVM_EXIT_HLT => "HLT",
        KVM_EXIT_MMIO => "MMIO",
        KVM_EXIT_SHUTDOWN => "SHUTDOWN",
        KVM_EXIT_FAIL_ENTRY => "FAIL_ENTRY",
        KVM_EXIT_INTERNAL_ERROR => "INTERNAL_ERROR",
        KVM_EXIT_INTR => "INTR",
        _ => "other",
    }
}

/// Runs until an exit that is not `KVM_EXIT_INTR`; fails on an unexpected reason.
pub fn expect_exit(v: &Vcpu, want: u32) -> Result<(), String> {
    let r = v.run().or_else(|e| err("KVM_RUN", e))?;
    if r != want {
        let rip = v.regs().map(|r| r.rip).unwrap_or(0);
        return Err(format!(
            "exit {} ({r}), expected {} ({want}); rip {rip:#x}, data {:x?}",
            exit_name(r),
            exit_name(want),
            [v.exit_u64(0), v.exit_u64(1), v.exit_u64(2), v.exit_u64(3)]
        ));
    }
    Ok(())
}
