use super::*;

fn req(slot: u32, gpa: u64, size: u64, hva: u64, flags: u32) -> Request {
    Request { slot, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: hva }
}
fn slot(id: u16, gpa: u64, size: u64, hva: u64, flags: u32) -> SlotDesc {
    SlotDesc { id, base_gfn: gpa >> 12, npages: size >> 12, hva, flags }
}

#[test]
fn create_then_overlap() {
    let a = slot(0, 0, 0x10000, 0x7000_0000, 0);
    assert_eq!(check_request(&req(0, 0, 0x10000, 0x7000_0000, 0), &[]), Ok(Change::Create(a)));
    assert_eq!(check_request(&req(1, 0xf000, 0x2000, 0x7100_0000, 0), &[a]), Err(Refusal::Overlap));
    assert!(matches!(check_request(&req(1, 0x10000, 0x2000, 0x7100_0000, 0), &[a]), Ok(Change::Create(_))));
}

#[test]
fn misalignment_and_bad_flags() {
    assert_eq!(check_request(&req(0, 0x800, 0x1000, 0x7000_0000, 0), &[]), Err(Refusal::Invalid));
    assert_eq!(check_request(&req(0, 0, 0x1800, 0x7000_0000, 0), &[]), Err(Refusal::Invalid));
    assert_eq!(check_request(&req(0, 0, 0x1000, 0x7000_0010, 0), &[]), Err(Refusal::Invalid));
    assert_eq!(check_request(&req(0, 0, 0x1000, 0x7000_0000, 0x8), &[]), Err(Refusal::Invalid));
    assert_eq!(check_request(&req(0, 0, 0x1000, 0x7000_0000, MEM_GUEST_MEMFD), &[]), Err(Refusal::Invalid));
}

#[test]
fn slot_id_limits() {
    assert_eq!(check_request(&req(MAX_SLOTS as u32, 0, 0x1000, 0x7000_0000, 0), &[]), Err(Refusal::Invalid));
    // Address space 1 (SMM) exists; 2 does not.
    assert!(matches!(check_request(&req(1 << 16 | 5, 0, 0x1000, 0x7000_0000, 0), &[]), Ok(Change::Create(s)) if s.id == 5));
    assert_eq!(check_request(&req(2 << 16, 0, 0x1000, 0x7000_0000, 0), &[]), Err(Refusal::Invalid));
    assert_eq!(check_request(&req(1 << 16 | MAX_SLOTS as u32, 0, 0x1000, 0x7000_0000, 0), &[]), Err(Refusal::Invalid));
    assert!(check_request(&req(MAX_SLOTS as u32 - 1, 0, 0x1000, 0x7000_0000, 0), &[]).is_ok());
}

#[test]
fn overflow_and_kernel_addresses() {
    assert_eq!(check_request(&req(0, u64::MAX - 0xfff, 0x2000, 0x7000_0000, 0), &[]), Err(Refusal::Invalid));
    assert_eq!(check_request(&req(0, 0, 0x1000, 0xffff_8000_0000_0000, 0), &[]), Err(Refusal::Invalid));
}

#[test]
fn delete_move_flags() {
    let a = slot(3, 0x10000, 0x4000, 0x7000_0000, 0);
    assert_eq!(check_request(&req(3, 0, 0, 0, 0), &[a]), Ok(Change::Delete(a)));
    assert_eq!(check_request(&req(4, 0, 0, 0, 0), &[a]), Err(Refusal::Invalid));
    let moved = slot(3, 0x20000, 0x4000, 0x7000_0000, 0);
    assert_eq!(check_request(&req(3, 0x20000, 0x4000, 0x7000_0000, 0), &[a]), Ok(Change::Move { old: a, new: moved }));
    let logged = slot(3, 0x10000, 0x4000, 0x7000_0000, MEM_LOG_DIRTY_PAGES);
    assert_eq!(
        check_request(&req(3, 0x10000, 0x4000, 0x7000_0000, MEM_LOG_DIRTY_PAGES), &[a]),
        Ok(Change::FlagsOnly { old: a, new: logged })
    );
    assert_eq!(check_request(&req(3, 0x10000, 0x4000, 0x7000_0000, 0), &[a]), Ok(Change::Unchanged));
    // Size, address or READONLY cannot change in place.
    assert_eq!(check_request(&req(3, 0x10000, 0x8000, 0x7000_0000, 0), &[a]), Err(Refusal::Invalid));
    assert_eq!(check_request(&req(3, 0x10000, 0x4000, 0x7100_0000, 0), &[a]), Err(Refusal::Invalid));
    assert_eq!(check_request(&req(3, 0x10000, 0x4000, 0x7000_0000, MEM_READONLY), &[a]), Err(Refusal::Invalid));
}

#[test]
fn move_onto_another_slot_is_eexist() {
    let a = slot(0, 0, 0x4000, 0x7000_0000, 0);
    let b = slot(1, 0x10000, 0x4000, 0x7100_0000, 0);
    assert_eq!(check_request(&req(1, 0x2000, 0x4000, 0x7100_0000, 0), &[a, b]), Err(Refusal::Overlap));
}

#[test]
fn lookup() {
    let a = slot(0, 0, 0x4000, 0x7000_0000, 0);
    let b = slot(1, 0x10000, 0x4000, 0x7100_0000, 0);
    let s = [a, b];
    assert_eq!(find(&s, 3).map(|s| s.id), Some(0));
    assert_eq!(find(&s, 4), None);
    assert_eq!(find(&s, 0x11).map(|s| s.hva_of(0x11)), Some(0x7100_1000));
}
