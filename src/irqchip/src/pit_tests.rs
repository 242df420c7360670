use super::*;

const T0: u64 = 1_000_000_000;

/// The shortest time in which exactly `t` input clock ticks have passed.
fn ns(t: u64) -> u64 {
    (t * NSEC_PER_SEC).div_ceil(PIT_FREQ_HZ)
}

/// Control word: channel, access (1 LSB, 2 MSB, 3 LSB then MSB), mode, bcd.
fn cw(ch: u8, access: u8, mode: u8, bcd: u8) -> u8 {
    (ch << 6) | (access << 4) | (mode << 1) | bcd
}

/// Programs `ch` in LSB-then-MSB access with `mode` and `count`; returns the
/// last port_write result.
fn program(pit: &mut Pit, ch: u16, mode: u8, count: u16, now: u64) -> bool {
    assert!(!pit.port_write(0x43, cw(ch as u8, 3, mode, 0), now));
    assert!(!pit.port_write(0x40 + ch, count as u8, now));
    pit.port_write(0x40 + ch, (count >> 8) as u8, now)
}

/// Reads a 16-bit count in LSB-then-MSB access.
fn read16(pit: &mut Pit, ch: u16, now: u64) -> u16 {
    let lo = pit.port_read(0x40 + ch, now);
    let hi = pit.port_read(0x40 + ch, now);
    u16::from_le_bytes([lo, hi])
}

fn out2(pit: &Pit, now: u64) -> bool {
    pit.speaker_read(now) & 0x20 != 0
}

#[test]
fn reset_state() {
    let pit = Pit::new(T0);
    let s = pit.state();
    assert_eq!(s.flags, 0);
    for (i, c) in s.channels.iter().enumerate() {
        assert_eq!(c.mode, PIT_MODE_NONE);
        assert_eq!(c.count, 0x10000);
        assert_eq!(c.gate, u8::from(i != 2));
        assert_eq!(c.rw_mode, 0);
        assert_eq!(c.read_state, 0);
        assert_eq!(c.write_state, 0);
    }
    assert_eq!(s.channels[0].count_load_time, 0);
    assert_eq!(s.channels[1].count_load_time, T0 as i64);
    assert_eq!(s.channels[2].count_load_time, T0 as i64);
    assert_eq!(pit.ch0_timer(), None);
    assert!(Pit::handles_port(0x40) && Pit::handles_port(0x43));
    assert!(!Pit::handles_port(0x3f) && !Pit::handles_port(0x44) && !Pit::handles_port(0x61));
}

#[test]
fn reset_after_use_equals_new() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 0, 2, 1000, T0);
    program(&mut pit, 2, 3, 5, T0);
    pit.speaker_write(3, T0);
    pit.reset(T0 + 5);
    assert_eq!(pit.state(), Pit::new(T0 + 5).state());
    assert_eq!(pit.ch0_timer(), None);
}

#[test]
fn unprogrammed_channel_reads() {
    // Mode 0xff counts as mode 2 from 0x10000; read state 0 reads LSB.
    let mut pit = Pit::new(T0);
    assert_eq!(pit.port_read(0x41, T0), 0);
    assert_eq!(pit.port_read(0x41, T0 + ns(1)), 0xff);
    assert_eq!(pit.port_read(0x41, T0 + ns(0x101)), 0xff);
    assert_eq!(pit.port_read(0x43, T0), 0);
    // A latch with rw_mode 0 latches nothing (count_latched = rw_mode).
    pit.port_write(0x43, 0x40, T0);
    assert_eq!(pit.state().channels[1].count_latched, 0);
}

#[test]
fn mode0_interrupt_on_terminal_count() {
    let mut pit = Pit::new(T0);
    assert!(!program(&mut pit, 2, 0, 100, T0));
    assert_eq!(pit.state().channels[2].mode, 0);
    assert_eq!(read16(&mut pit, 2, T0), 100);
    assert!(!out2(&pit, T0));
    assert_eq!(read16(&mut pit, 2, T0 + ns(30)), 70);
    assert!(!out2(&pit, T0 + ns(99)));
    assert!(out2(&pit, T0 + ns(100)));
    assert_eq!(read16(&mut pit, 2, T0 + ns(100)), 0);
    // Keeps counting down past zero, wrapping to 0xffff.
    assert_eq!(read16(&mut pit, 2, T0 + ns(150)), 0xffce);
    assert!(out2(&pit, T0 + ns(150)));
}

#[test]
fn mode1_one_shot() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 2, 1, 50, T0);
    assert!(out2(&pit, T0));
    assert!(out2(&pit, T0 + ns(49)));
    assert!(!out2(&pit, T0 + ns(50)));
    assert_eq!(read16(&mut pit, 2, T0 + ns(10)), 40);
    assert_eq!(read16(&mut pit, 2, T0 + ns(60)), 0xfff6);
}

#[test]
fn mode2_rate_generator() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 2, 2, 10, T0);
    assert!(!out2(&pit, T0));
    assert_eq!(read16(&mut pit, 2, T0), 10);
    assert_eq!(read16(&mut pit, 2, T0 + ns(3)), 7);
    assert!(!out2(&pit, T0 + ns(9)));
    assert!(out2(&pit, T0 + ns(10)));
    assert!(!out2(&pit, T0 + ns(11)));
    assert!(out2(&pit, T0 + ns(20)));
    // Reloads: d mod count.
    assert_eq!(read16(&mut pit, 2, T0 + ns(10)), 10);
    assert_eq!(read16(&mut pit, 2, T0 + ns(24)), 6);
}

#[test]
fn mode3_square_wave() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 2, 3, 10, T0);
    for t in 0..5 {
        assert!(out2(&pit, T0 + ns(t)), "t={t}");
    }
    for t in 5..10 {
        assert!(!out2(&pit, T0 + ns(t)), "t={t}");
    }
    assert!(out2(&pit, T0 + ns(10)));
    // Counts down by two per tick.
    assert_eq!(read16(&mut pit, 2, T0), 10);
    assert_eq!(read16(&mut pit, 2, T0 + ns(2)), 6);
    assert_eq!(read16(&mut pit, 2, T0 + ns(5)), 10);
    assert_eq!(read16(&mut pit, 2, T0 + ns(7)), 6);
    // Odd count: high for (count + 1) / 2 ticks.
    program(&mut pit, 2, 3, 5, T0);
    assert!(out2(&pit, T0 + ns(2)));
    assert!(!out2(&pit, T0 + ns(3)));
}

#[test]
fn mode4_and_mode5_strobe() {
    for mode in [4, 5] {
        let mut pit = Pit::new(T0);
        program(&mut pit, 2, mode, 20, T0);
        assert_eq!(pit.state().channels[2].mode, mode);
        assert!(!out2(&pit, T0 + ns(19)));
        assert!(out2(&pit, T0 + ns(20)));
        assert!(!out2(&pit, T0 + ns(21)));
        assert_eq!(read16(&mut pit, 2, T0 + ns(5)), 15);
        assert_eq!(read16(&mut pit, 2, T0 + ns(25)), 0xfffb);
    }
}

#[test]
fn modes_6_and_7_alias_2_and_3() {
    let mut pit = Pit::new(T0);
    pit.port_write(0x43, cw(1, 3, 6, 0), T0);
    assert_eq!(pit.state().channels[1].mode, 2);
    pit.port_write(0x43, cw(1, 3, 7, 0), T0);
    assert_eq!(pit.state().channels[1].mode, 3);
}

#[test]
fn count_zero_is_65536() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 2, 0, 0, T0);
    assert_eq!(pit.state().channels[2].count, 0x10000);
    assert_eq!(read16(&mut pit, 2, T0), 0);
    assert_eq!(read16(&mut pit, 2, T0 + ns(1)), 0xffff);
    assert!(!out2(&pit, T0 + ns(65535)));
    assert!(out2(&pit, T0 + ns(65536)));
    // Through channel 0's timer too: 65536 ticks is about 54.9 ms.
    assert!(program(&mut pit, 0, 2, 0, T0));
    let t = pit.ch0_timer().unwrap();
    assert_eq!(t.period_ns, Some(65536 * NSEC_PER_SEC / PIT_FREQ_HZ));
}

#[test]
fn lsb_only_and_msb_only_access() {
    let mut pit = Pit::new(T0);
    pit.port_write(0x43, cw(1, 1, 0, 0), T0);
    pit.port_write(0x41, 0x34, T0);
    assert_eq!(pit.state().channels[1].count, 0x34);
    assert_eq!(pit.port_read(0x41, T0 + ns(4)), 0x30);
    assert_eq!(pit.port_read(0x41, T0 + ns(4)), 0x30);

    pit.port_write(0x43, cw(1, 2, 0, 0), T0);
    pit.port_write(0x41, 0x12, T0);
    assert_eq!(pit.state().channels[1].count, 0x1200);
    // MSB access reads the high byte every time.
    assert_eq!(pit.port_read(0x41, T0 + ns(1)), 0x11);
    assert_eq!(pit.port_read(0x41, T0 + ns(1)), 0x11);
    // MSB write of 0: count 0 -> 0x10000.
    pit.port_write(0x41, 0, T0);
    assert_eq!(pit.state().channels[1].count, 0x10000);
}

#[test]
fn word_access_toggles() {
    let mut pit = Pit::new(T0);
    pit.port_write(0x43, cw(1, 3, 0, 0), T0);
    pit.port_write(0x41, 0xcd, T0);
    let s = pit.state().channels[1];
    assert_eq!(s.write_state, RW_STATE_WORD1);
    assert_eq!(s.write_latch, 0xcd);
    // Old count stays until the MSB arrives.
    assert_eq!(s.count, 0x10000);
    pit.port_write(0x41, 0xab, T0);
    assert_eq!(pit.state().channels[1].count, 0xabcd);
    assert_eq!(pit.state().channels[1].write_state, RW_STATE_WORD0);
    // A half-read word: the next read is the MSB.
    assert_eq!(pit.port_read(0x41, T0), 0xcd);
    assert_eq!(pit.state().channels[1].read_state, RW_STATE_WORD1);
    assert_eq!(pit.port_read(0x41, T0), 0xab);
    // A new control word restarts the byte sequence.
    pit.port_write(0x41, 0x11, T0);
    pit.port_write(0x43, cw(1, 3, 0, 0), T0);
    assert_eq!(pit.state().channels[1].write_state, RW_STATE_WORD0);
}

#[test]
fn counter_latch_command() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 2, 2, 1000, T0);
    pit.port_write(0x43, cw(2, 0, 0, 0), T0 + ns(100));
    let s = pit.state().channels[2];
    assert_eq!(s.count_latched, 3);
    assert_eq!(s.latched_count, 900);
    // A second latch before the read is ignored.
    pit.port_write(0x43, cw(2, 0, 0, 0), T0 + ns(200));
    assert_eq!(read16(&mut pit, 2, T0 + ns(500)), 900);
    assert_eq!(pit.state().channels[2].count_latched, 0);
    // Live again.
    assert_eq!(read16(&mut pit, 2, T0 + ns(500)), 500);

    // LSB-only latched read clears the latch after one byte.
    pit.port_write(0x43, cw(2, 1, 2, 0), T0);
    pit.port_write(0x42, 200, T0);
    pit.port_write(0x43, cw(2, 0, 0, 0), T0 + ns(50));
    assert_eq!(pit.port_read(0x42, T0 + ns(60)), 150);
    assert_eq!(pit.port_read(0x42, T0 + ns(60)), 140);
    // MSB-only.
    pit.port_write(0x43, cw(2, 2, 2, 0), T0);
    pit.port_write(0x42, 2, T0);
    pit.port_write(0x43, cw(2, 0, 0, 0), T0 + ns(1));
    assert_eq!(pit.port_read(0x42, T0 + ns(300)), 1);
    assert_eq!(pit.state().channels[2].count_latched, 0);
}

#[test]
fn read_back_command() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 2, 0, 100, T0);
    program(&mut pit, 1, 3, 10, T0);
    // Latch count and status of channel 2 only.
    pit.port_write(0x43, 0xc0 | (2 << 2), T0 + ns(100));
    let s = pit.state();
    assert_eq!(s.channels[2].status_latched, 1);
    assert_eq!(s.channels[2].count_latched, 3);
    assert_eq!(s.channels[1].status_latched, 0);
    assert_eq!(s.channels[1].count_latched, 0);
    // Status first: OUT high, access 3, mode 0, binary.
    assert_eq!(pit.port_read(0x42, T0 + ns(120)), 0x80 | 0x30);
    assert_eq!(read16(&mut pit, 2, T0 + ns(120)), 0);
    // Status only (bit 5 set = don't latch count), channels 1 and 2.
    pit.port_write(0x43, 0xc0 | 0x20 | (3 << 2), T0 + ns(7));
    let s = pit.state();
    assert_eq!(s.channels[1].count_latched, 0);
    assert_eq!(s.channels[1].status, 0x30 | (3 << 1));
    assert_eq!(pit.port_read(0x41, T0 + ns(7)), 0x36);
    // Count only (bit 4 set).
    pit.port_write(0x43, 0xc0 | 0x10 | (1 << 2), T0 + ns(2));
    assert_eq!(pit.state().channels[1].status_latched, 0);
    assert_eq!(read16(&mut pit, 1, T0 + ns(9)), 6);
    // A latched status is not overwritten by a second read-back.
    pit.port_write(0x43, 0xc0 | 0x20 | (1 << 2), T0);
    let st = pit.state().channels[1].status;
    pit.port_write(0x43, 0xc0 | 0x20 | (1 << 2), T0 + ns(7));
    assert_eq!(pit.state().channels[1].status, st);
    // Read-back with no channel bits does nothing.
    let before = pit.state();
    pit.port_write(0x43, 0xc0, T0);
    assert_eq!(pit.state(), before);
}

#[test]
fn bcd_flag_is_stored_and_reported() {
    let mut pit = Pit::new(T0);
    pit.port_write(0x43, cw(1, 3, 2, 1), T0);
    assert_eq!(pit.state().channels[1].bcd, 1);
    pit.port_write(0x41, 0x00, T0);
    pit.port_write(0x41, 0x10, T0);
    // Counting stays binary, as upstream.
    assert_eq!(read16(&mut pit, 1, T0 + ns(1)), 0x0fff);
    pit.port_write(0x43, 0xc0 | 0x20 | (1 << 2), T0);
    assert_eq!(pit.port_read(0x41, T0) & 1, 1);
}

#[test]
fn status_of_unprogrammed_channel() {
    // Mode 0xff shifts into the status byte as upstream's truncation does.
    let mut pit = Pit::new(T0);
    pit.port_write(0x43, 0xc0 | 0x20 | (1 << 2), T0);
    assert_eq!(pit.port_read(0x41, T0), 0xfe);
}

#[test]
fn speaker_port_and_gate() {
    let mut pit = Pit::new(T0);
    // Bit 14 of the time set -> refresh bit.
    let t = (T0 | (1 << 14)) & !((1 << 14) - 1);
    assert_eq!(pit.speaker_read(t) & 0x10, 0x10);
    assert_eq!(pit.speaker_read(t & !(1 << 14)) & 0x10, 0);
    assert_eq!(pit.speaker_read(t) & 0x03, 0);
    pit.speaker_write(0x03, t);
    assert_eq!(pit.speaker_read(t) & 0x03, 0x03);
    assert_eq!(pit.state().flags, PIT_FLAGS_SPEAKER_DATA_ON);
    assert_eq!(pit.state().channels[2].gate, 1);
    pit.speaker_write(0x01, t);
    assert_eq!(pit.speaker_read(t) & 0x03, 0x01);
    assert_eq!(pit.state().flags, 0);
    pit.speaker_write(0xfc, t);
    assert_eq!(pit.speaker_read(t) & 0x03, 0);
    assert_eq!(pit.state().channels[2].gate, 0);
}

#[test]
fn gate_rising_edge_restarts_modes_1235() {
    for mode in [1u8, 2, 3, 5] {
        let mut pit = Pit::new(T0);
        program(&mut pit, 2, mode, 1000, T0);
        let t1 = T0 + ns(300);
        pit.speaker_write(1, t1);
        assert_eq!(pit.state().channels[2].count_load_time, t1 as i64, "mode {mode}");
        // Already high: no new edge.
        pit.speaker_write(1, t1 + 1000);
        assert_eq!(pit.state().channels[2].count_load_time, t1 as i64);
        // Falling edge does not restart either.
        pit.speaker_write(0, t1 + 2000);
        assert_eq!(pit.state().channels[2].count_load_time, t1 as i64);
    }
    for mode in [0u8, 4] {
        let mut pit = Pit::new(T0);
        program(&mut pit, 2, mode, 1000, T0);
        pit.speaker_write(1, T0 + 5000);
        assert_eq!(pit.state().channels[2].count_load_time, T0 as i64, "mode {mode}");
    }
}

#[test]
fn pc_speaker_delay_loop_pattern() {
    // What Linux's pit_calibrate_tsc does: gate 2 high, speaker off, mode 0
    // count on channel 2, poll OUT2 in port 0x61.
    let mut pit = Pit::new(T0);
    pit.speaker_write(1, T0);
    program(&mut pit, 2, 0, 0xffff, T0 + 10);
    assert_eq!(pit.speaker_read(T0 + 10) & 0x23, 0x01);
    assert!(!out2(&pit, T0 + 10 + ns(0xfffe)));
    assert!(out2(&pit, T0 + 10 + ns(0xffff)));
}

#[test]
fn ch0_linux_periodic_hz() {
    // Linux's i8254 clockevent at HZ=100: mode 2, LATCH = 11932.
    let mut pit = Pit::new(T0);
    assert!(!pit.port_write(0x43, 0x34, T0));
    assert_eq!(pit.ch0_timer(), None);
    assert!(!pit.port_write(0x40, 0x9c, T0));
    assert!(pit.port_write(0x40, 0x2e, T0));
    let period = 11932 * NSEC_PER_SEC / PIT_FREQ_HZ;
    assert_eq!(period, 10_000_159);
    assert_eq!(pit.ch0_timer(), Some(Ch0Timer { first_ns: T0 + period, period_ns: Some(period) }));
    // Channel 0's count follows the timer, across periods.
    for k in [0u64, 1, 5, 1000] {
        let base = T0 + k * period;
        let c = read16(&mut pit, 0, base + period / 2);
        assert!((5965..=5967).contains(&c), "k={k} c={c}");
        let c = read16(&mut pit, 0, base + period / 4);
        assert!((8948..=8950).contains(&c), "k={k} c={c}");
    }
    // A control word alone does not touch the timer.
    assert!(!pit.port_write(0x43, 0x30, T0 + 5));
    assert!(pit.ch0_timer().is_some());
}

#[test]
fn ch0_one_shot_modes() {
    for mode in [0u8, 1, 4] {
        let mut pit = Pit::new(T0);
        assert!(program(&mut pit, 0, mode, 1000, T0 + 7));
        let t = pit.ch0_timer().unwrap();
        assert_eq!(t, Ch0Timer { first_ns: T0 + 7 + 1000 * NSEC_PER_SEC / PIT_FREQ_HZ, period_ns: None });
    }
    // Mode 0 one-shot: elapsed keeps growing past the expiry.
    let mut pit = Pit::new(T0);
    program(&mut pit, 0, 0, 100, T0);
    assert_eq!(read16(&mut pit, 0, T0 + ns(40)), 60);
    assert_eq!(read16(&mut pit, 0, T0 + ns(140)), 0xffd8);
}

#[test]
fn ch0_mode5_and_unprogrammed_stop_the_timer() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 0, 2, 5000, T0);
    assert!(pit.ch0_timer().is_some());
    assert!(program(&mut pit, 0, 5, 5000, T0 + 100));
    assert_eq!(pit.ch0_timer(), None);
}

#[test]
fn ch0_minimum_period() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 0, 2, 2, T0);
    let t = pit.ch0_timer().unwrap();
    assert_eq!(t.first_ns, T0 + 2 * NSEC_PER_SEC / PIT_FREQ_HZ);
    assert_eq!(t.period_ns, Some(MIN_TIMER_PERIOD_NS));
    // One-shots are not raised.
    program(&mut pit, 0, 0, 2, T0);
    assert_eq!(pit.ch0_timer().unwrap().period_ns, None);
    assert_eq!(pit.ch0_timer().unwrap().first_ns, T0 + 1676);
    // The minimum is tunable (module parameter upstream).
    pit.set_min_timer_period_ns(0);
    program(&mut pit, 0, 3, 2, T0);
    assert_eq!(pit.ch0_timer().unwrap().period_ns, Some(1676));
}

#[test]
fn ch0_stopped_timer_keeps_elapsed() {
    // Upstream keeps reading hrtimer_get_remaining() of a cancelled timer.
    let mut pit = Pit::new(T0);
    program(&mut pit, 0, 2, 1000, T0);
    // Switch to mode 5 with the same count: timer stops at T0 + 250 ticks.
    pit.port_write(0x43, cw(0, 3, 5, 0), T0 + ns(250));
    pit.port_write(0x40, 0xe8, T0 + ns(250));
    assert!(pit.port_write(0x40, 0x03, T0 + ns(250)));
    assert_eq!(pit.ch0_timer(), None);
    // Elapsed still measured from the old start: mode 5 count = 1000 - d.
    let c = read16(&mut pit, 0, T0 + ns(400));
    assert!((599..=601).contains(&c), "c={c}");
}

#[test]
fn ch0_hpet_legacy() {
    let mut pit = Pit::new(T0);
    program(&mut pit, 0, 2, 11932, T0);
    let mut s = pit.state();
    s.flags |= PIT_FLAGS_HPET_LEGACY;
    // Entering legacy mode stops the timer.
    assert!(pit.set_state(&s, T0 + 10));
    assert_eq!(pit.ch0_timer(), None);
    assert_eq!(pit.state().channels[0].mode, 2);
    assert_eq!(pit.state().flags & PIT_FLAGS_HPET_LEGACY, PIT_FLAGS_HPET_LEGACY);
    // Count writes no longer arm it.
    assert!(!program(&mut pit, 0, 2, 11932, T0 + 20));
    assert_eq!(pit.ch0_timer(), None);
    // Staying in legacy mode: nothing to re-arm.
    assert!(!pit.set_state(&pit.state(), T0 + 30));
    // The speaker register keeps the HPET flag.
    pit.speaker_write(2, T0);
    assert_eq!(pit.state().flags, PIT_FLAGS_HPET_LEGACY | PIT_FLAGS_SPEAKER_DATA_ON);
    // Leaving legacy mode restarts channel 0 from its count.
    let mut s = pit.state();
    s.flags = 0;
    assert!(pit.set_state(&s, T0 + 40));
    let period = 11932 * NSEC_PER_SEC / PIT_FREQ_HZ;
    assert_eq!(pit.ch0_timer(), Some(Ch0Timer { first_ns: T0 + 40 + period, period_ns: Some(period) }));
}

#[test]
fn set_state_round_trip() {
    let mut a = Pit::new(T0);
    program(&mut a, 0, 2, 11932, T0);
    program(&mut a, 1, 3, 18, T0);
    a.port_write(0x43, cw(2, 3, 0, 1), T0);
    a.port_write(0x42, 0x55, T0);
    a.speaker_write(3, T0);
    a.port_write(0x43, 0x40, T0 + ns(5)); // latch channel 1
    let s = a.state();

    let t1 = T0 + 5_000_000_000;
    let mut b = Pit::new(t1);
    assert!(b.set_state(&s, t1));
    let mut expect = s;
    // Channels 1 and 2 restart at the load, as upstream.
    expect.channels[1].count_load_time = t1 as i64;
    expect.channels[2].count_load_time = t1 as i64;
    assert_eq!(b.state(), expect);
    let period = 11932 * NSEC_PER_SEC / PIT_FREQ_HZ;
    assert_eq!(b.ch0_timer(), Some(Ch0Timer { first_ns: t1 + period, period_ns: Some(period) }));
    // The half-written word on channel 2 completes on the new PIT.
    assert!(!b.port_write(0x42, 0x01, t1));
    assert_eq!(b.state().channels[2].count, 0x0155);
    // The pending latch reads back as latched.
    assert_eq!(read16(&mut b, 1, t1 + ns(3)), s.channels[1].latched_count);

    // KVM_SET_PIT (no flags) keeps the flags.
    let mut c = Pit::new(t1);
    c.speaker_write(2, t1);
    assert!(c.set_channels(&s.channels, t1));
    assert_eq!(c.state().flags, PIT_FLAGS_SPEAKER_DATA_ON);
    // A fresh PIT's state round trips without arming channel 0.
    let mut d = Pit::new(t1);
    assert!(d.set_state(&Pit::new(T0).state(), t1));
    assert_eq!(d.ch0_timer(), None);
    assert_eq!(d.state(), Pit::new(t1).state());
}

#[test]
fn set_state_clamps_bad_fields() {
    let bad = PitChannelState {
        count: 0,
        latched_count: 0xffff,
        count_latched: 7,
        status_latched: 5,
        status: 0xff,
        read_state: 9,
        write_state: 200,
        write_latch: 0xff,
        rw_mode: 0xff,
        mode: 9,
        bcd: 3,
        gate: 2,
        count_load_time: i64::MIN,
    };
    let mut s = PitState { channels: [bad; 3], flags: !PIT_FLAGS_HPET_LEGACY };
    s.channels[1].mode = 6;
    s.channels[2].mode = 7;
    let mut pit = Pit::new(T0);
    assert!(pit.set_state(&s, T0));
    let got = pit.state();
    for c in &got.channels {
        assert_eq!(c.count, 0x10000);
        assert_eq!(c.count_latched, RW_STATE_LSB);
        assert_eq!(c.status_latched, 1);
        assert_eq!(c.read_state, RW_STATE_LSB);
        assert_eq!(c.write_state, RW_STATE_LSB);
        assert_eq!(c.rw_mode, 3);
        assert_eq!(c.bcd, 1);
        assert_eq!(c.gate, 1);
    }
    assert_eq!(got.channels[0].mode, PIT_MODE_NONE);
    assert_eq!(got.channels[1].mode, 2);
    assert_eq!(got.channels[2].mode, 3);
    assert_eq!(got.channels[0].count_load_time, i64::MIN);
    assert_eq!(pit.ch0_timer(), None);
    // Reads behave: status, then latched LSB, then live LSB.
    assert_eq!(pit.port_read(0x40, T0), 0xff);
    assert_eq!(pit.port_read(0x40, T0), 0xff);
    assert_eq!(pit.port_read(0x40, T0), 0x00);
    // A huge count from userspace stays usable.
    let mut s = pit.state();
    s.channels[0].count = u32::MAX;
    s.channels[0].mode = 2;
    s.channels[2].count = u32::MAX;
    s.channels[2].count_load_time = i64::MAX;
    assert!(pit.set_state(&s, u64::MAX));
    assert_eq!(pit.ch0_timer().unwrap().first_ns, u64::MAX);
    let _ = pit.port_read(0x40, u64::MAX);
    let _ = pit.port_read(0x42, 0);
    let _ = pit.speaker_read(u64::MAX);
}

use crate::test_rng::XorShift;

fn random_channel(r: &mut XorShift) -> PitChannelState {
    let v = r.next();
    let w = r.next();
    PitChannelState {
        count: match w % 4 {
            0 => 0,
            1 => u32::MAX,
            _ => (w >> 8) as u32 & 0x1ffff,
        },
        latched_count: v as u16,
        count_latched: (v >> 16) as u8,
        status_latched: (v >> 24) as u8,
        status: (v >> 32) as u8,
        read_state: (v >> 40) as u8 % 8,
        write_state: (v >> 48) as u8 % 8,
        write_latch: (v >> 56) as u8,
        rw_mode: (w >> 40) as u8,
        mode: if w & (1 << 48) != 0 { (w >> 49) as u8 % 10 } else { (w >> 49) as u8 },
        bcd: (w >> 57) as u8,
        gate: (w >> 60) as u8,
        count_load_time: match v % 5 {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => r.next() as i64,
        },
    }
}

#[test]
fn tick_arithmetic_is_exact() {
    // Against a 128-bit reference, host-only.
    let mut r = XorShift(0x1234_5678_9abc_def1);
    for i in 0..100_000u64 {
        let ns = match i % 3 {
            0 => r.next(),
            1 => r.next() % 10_000_000_000,
            _ => u64::MAX - r.next() % 1_000_000_000,
        };
        let want = u128::from(ns) * u128::from(PIT_FREQ_HZ) / u128::from(NSEC_PER_SEC);
        assert_eq!(u128::from(ticks(ns)), want, "ns={ns}");
    }
    assert_eq!(ticks_to_ns(u32::MAX), (u128::from(u32::MAX) * 1_000_000_000 / 1_193_181) as u64);
    assert_eq!(ns_since(5, i64::MIN), 5 + (1u64 << 63));
    assert_eq!(ns_since(u64::MAX, i64::MIN), u64::MAX);
    assert_eq!(ns_since(5, 10), 0);
    assert_eq!(ns_since(10, 5), 5);
}

#[test]
fn random_ops_never_panic() {
    let mut r = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut pit = Pit::new(0);
    let mut now: u64 = 0;
    for _ in 0..100_000 {
        let op = r.next();
        // Mostly forward time, sometimes jumps anywhere (including back).
        now = match op % 16 {
            0 => r.next(),
            1 => u64::MAX - (r.next() % 1000),
            _ => now.wrapping_add(r.next() % 20_000_000),
        };
        let port = 0x3e + (r.next() % 8) as u16;
        let val = r.next() as u8;
        match (op >> 8) % 8 {
            0 | 1 => {
                let _ = pit.port_read(port, now);
            }
            2..=4 => {
                let _ = pit.port_write(port, val, now);
            }
            5 => pit.speaker_write(val, now),
            6 => {
                let _ = pit.speaker_read(now);
            }
            _ => {
                if (op >> 16) & 63 == 0 {
                    let s = PitState {
                        channels: [random_channel(&mut r), random_channel(&mut r), random_channel(&mut r)],
                        flags: r.next() as u32,
                    };
                    let _ = pit.set_state(&s, now);
                } else if (op >> 16) % 512 == 1 {
                    pit.set_min_timer_period_ns(r.next() % 1_000_000);
                } else if (op >> 16) % 4096 == 2 {
                    pit.reset(now);
                }
            }
        }
        let s = pit.state();
        for c in &s.channels {
            assert!(c.mode <= 5 || c.mode == PIT_MODE_NONE);
            assert!(c.rw_mode <= 3);
            assert!(c.read_state <= RW_STATE_WORD1 && c.write_state <= RW_STATE_WORD1);
            assert!(c.count_latched <= RW_STATE_WORD0);
            assert!(c.status_latched <= 1 && c.bcd <= 1 && c.gate <= 1);
            assert!(c.count != 0);
        }
        if let Some(t) = pit.ch0_timer() {
            assert_eq!(s.flags & PIT_FLAGS_HPET_LEGACY, 0);
            if let Some(p) = t.period_ns {
                assert!(p > 0);
            }
        }
    }
}
