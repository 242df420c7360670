//! Thin, test-oriented access to /dev/kvm: raw ioctls that return the errno, so
//! tests can assert on exactly what the kernel answered.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An errno from a failed ioctl.
pub type Errno = i32;

pub fn open_kvm() -> Result<OwnedFd, String> {
    // SAFETY: a NUL-terminated path; the returned fd is owned below.
    let fd = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("open /dev/kvm: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl with an integer argument.
pub fn ioctl_val(fd: &impl AsRawFd, req: u32, arg: u64) -> Result<i64, Errno> {
    // SAFETY: the kernel interprets `arg`; no user memory is involved unless the
    // request says so, in which case the caller passes a valid address or a
    // deliberately bad one (the kernel must answer EFAULT).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as libc::c_ulong, arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as i64)
    }
}

/// ioctl with a pointer to a buffer of ours.
pub fn ioctl_ptr<T>(fd: &impl AsRawFd, req: u32, arg: *mut T) -> Result<i64, Errno> {
    ioctl_val(fd, req, arg as u64)
}

/// A `struct kvm_msr_list` with room for `n` indices.
pub struct MsrList {
    pub buf: Vec<u32>,
}

impl MsrList {
    pub fn with_room(n: u32) -> Self {
        let mut buf = vec![0u32; n as usize + 1];
        buf[0] = n;
        MsrList { buf }
    }
    pub fn nmsrs(&self) -> u32 {
        self.buf[0]
    }
    pub fn indices(&self) -> &[u32] {
        let n = (self.buf[0] as usize).min(self.buf.len() - 1);
        &self.buf[1..1 + n]
    }
    pub fn ptr(&mut self) -> *mut u32 {
        self.buf.as_mut_ptr()
    }
}

/// A `struct kvm_cpuid2` with room for `n` entries.
pub struct Cpuid2 {
    buf: Vec<u64>,
    room: usize,
}

impl Cpuid2 {
    pub fn with_room(n: u32) -> Self {
        let words = (8 + n as usize * 40).div_ceil(8);
        let mut buf = vec![0u64; words];
        buf[0] = n as u64; // nent (low half), padding (high half)
        Cpuid2 { buf, room: n as usize }
    }
    /// A table holding exactly `entries` (for KVM_SET_CPUID2).
    pub fn from_entries(entries: &[kvm_uapi::kvm_cpuid_entry2]) -> Self {
        let mut c = Cpuid2::with_room(entries.len() as u32);
        // SAFETY: the buffer has room for `entries.len()` entries after the
        // 8-byte header; unaligned writes of plain integers.
        unsafe {
            let base = (c.buf.as_mut_ptr() as *mut u8).add(8) as *mut kvm_uapi::kvm_cpuid_entry2;
            for (i, e) in entries.iter().enumerate() {
                std::ptr::write_unaligned(base.add(i), *e);
            }
        }
        c
    }
    pub fn nent(&self) -> u32 {
        self.buf[0] as u32
    }
    pub fn ptr(&mut self) -> *mut u64 {
        self.buf.as_mut_ptr()
    }
    pub fn entries(&self) -> Vec<kvm_uapi::kvm_cpuid_entry2> {
        let n = (self.nent() as usize).min(self.room);
        // SAFETY: the buffer holds `room` entries after the 8-byte header, and
        // kvm_cpuid_entry2 is plain integers (any bit pattern is valid).
        unsafe {
            let base = (self.buf.as_ptr() as *const u8).add(8) as *const kvm_uapi::kvm_cpuid_entry2;
            (0..n).map(|i| std::ptr::read_unaligned(base.add(i))).collect()
        }
    }
}

/// Looks up a CPUID entry by function and index.
pub fn find_cpuid(
    entries: &[kvm_uapi::kvm_cpuid_entry2],
    function: u32,
    index: u32,
) -> Option<kvm_uapi::kvm_cpuid_entry2> {
    entries.iter().copied().find(|e| e.function == function && e.index == index)
}
