//! The 8254 programmable interval timer (ports 0x40-0x43) and the speaker
//! register at port 0x61, with the semantics of upstream's i8254.c.
//!
//! Nothing here counts on its own: a channel's counter and OUT pin are worked
//! out from the time elapsed since the count was loaded, at `PIT_FREQ_HZ`.
//! Channel 0 drives IRQ 0; its interrupts come from an hrtimer the glue owns,
//! armed from [`Pit::ch0_timer`] whenever [`Pit::port_write`] or
//! [`Pit::set_state`] says channel 0 was reprogrammed or stopped.
//!
//! Upstream derives channel 0's elapsed time from that hrtimer (`period -
//! remaining`), not from `count_load_time`, which it never updates for channel
//! 0. The model keeps the hrtimer's schedule ([`Ch0Hrtimer`]) and reproduces
//! that, so reads of channel 0 agree with upstream even when the period was
//! raised to the minimum or the timer was stopped.
//!
//! Upstream quirks kept on purpose, because guests and migration streams were
//! written against them:
//! - the gate only restarts counting on a rising edge in modes 1, 2, 3 and 5;
//!   it never stops a counter (upstream's "XXX" in pit_set_gate);
//! - a control word does not stop channel 0's timer: only a count load does;
//! - BCD is stored and reported in the status byte but counting is binary;
//! - after reset every channel is in mode 0xff ("no mode programmed"), which
//!   counts like mode 2, outputs like mode 0 and never arms a timer.

/// Channel 0's data port; channels 1 and 2 follow.
pub const PIT_BASE_PORT: u16 = 0x40;
/// The control word register (write-only).
pub const PIT_CONTROL_PORT: u16 = 0x43;
/// The speaker / NMI status register (upstream's KVM_SPEAKER_BASE_ADDRESS);
/// handled by [`Pit::speaker_read`] and [`Pit::speaker_write`].
pub const SPEAKER_PORT: u16 = 0x61;

/// The input clock. Upstream's KVM_PIT_FREQ is 1193181 (the crystal is
/// 14.31818 MHz / 12 = 1193181.67 Hz, truncated); counts read back by a guest
/// and the timer period depend on it, so the value is upstream's.
pub const PIT_FREQ_HZ: u64 = 1_193_181;

const NSEC_PER_SEC: u64 = 1_000_000_000;

/// Upstream's default `min_timer_period_us` (200): a periodic channel 0 is
/// never armed with a shorter period, as hrtimers are not throttled by the
/// host scheduler and a count of 1 would otherwise fire every 838 ns.
pub const MIN_TIMER_PERIOD_NS: u64 = 200_000;

/// `KVM_PIT_FLAGS_HPET_LEGACY`: the HPET has taken over IRQ 0, channel 0's
/// timer does not run.
pub const PIT_FLAGS_HPET_LEGACY: u32 = 1;
/// `KVM_PIT_FLAGS_SPEAKER_DATA_ON`: port 0x61 bit 1 as last written.
pub const PIT_FLAGS_SPEAKER_DATA_ON: u32 = 2;

/// The channel mode upstream's reset leaves: no mode programmed yet.
pub const PIT_MODE_NONE: u8 = 0xff;

// Read/write states of a channel's data port (upstream RW_STATE_*). 0 is what
// a channel holds before its first control word; it behaves as LSB.
const RW_STATE_LSB: u8 = 1;
const RW_STATE_MSB: u8 = 2;
const RW_STATE_WORD0: u8 = 3;
const RW_STATE_WORD1: u8 = 4;

/// As struct kvm_pit_channel_state; count_load_time is host ns (upstream stores ktime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PitChannelState {
    pub count: u32,
    pub latched_count: u16,
    pub count_latched: u8,
    pub status_latched: u8,
    pub status: u8,
    pub read_state: u8,
    pub write_state: u8,
    pub write_latch: u8,
    pub rw_mode: u8,
    pub mode: u8,
    pub bcd: u8,
    pub gate: u8,
    pub count_load_time: i64,
}

/// As struct kvm_pit_state2 minus reserved: channels + flags (KVM_PIT_FLAGS_HPET_LEGACY = 1, KVM_PIT_FLAGS_SPEAKER_DATA_ON = 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PitState {
    pub channels: [PitChannelState; 3],
    pub flags: u32,
}

/// Channel 0's interrupt schedule: first expiry (absolute ns) and the period for periodic modes (2 and 3); None period = one-shot (modes 0, 1, 4, 5 as upstream create_pit_timer treats them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ch0Timer {
    pub first_ns: u64,
    pub period_ns: Option<u64>,
}

/// What upstream's `kvm_kpit_state` knows of channel 0's hrtimer: enough to
/// answer `hrtimer_get_remaining()` at any `now`, assuming the glue's timer
/// fires on time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Ch0Hrtimer {
    /// `ps->period`: 0 until the timer is first armed (channel 0 then reads
    /// as if no time had passed). Not cleared when the timer stops.
    period_ns: u64,
    periodic: bool,
    armed: bool,
    /// The expiry the timer was started with.
    first_ns: u64,
    /// The expiry the timer held when it was stopped (hrtimer_cancel leaves
    /// it in place, and upstream keeps reading the remaining time from it).
    stopped_expires_ns: u64,
}

impl Ch0Hrtimer {
    /// The hrtimer's expiry as seen at `now`: a periodic timer has moved on by
    /// one period at each expiry up to and including `now`.
    fn expires(&self, now: u64) -> u64 {
        if !self.armed {
            return self.stopped_expires_ns;
        }
        if !self.periodic || now < self.first_ns || self.period_ns == 0 {
            return self.first_ns;
        }
        let fired = ((now - self.first_ns) / self.period_ns).saturating_add(1);
        fired
            .checked_mul(self.period_ns)
            .and_then(|t| t.checked_add(self.first_ns))
            .unwrap_or(u64::MAX)
    }

    /// Upstream __kpit_elapsed: `period - remaining`, 0 before the first arm.
    fn elapsed(&self, now: u64) -> u64 {
        if self.period_ns == 0 {
            return 0;
        }
        // remaining = expires - now may be negative (a one-shot that has
        // fired, a stopped timer): elapsed then exceeds the period.
        let expires = self.expires(now);
        if expires >= now {
            self.period_ns.saturating_sub(expires - now)
        } else {
            self.period_ns.saturating_add(now - expires)
        }
    }

    fn stop(&mut self, now: u64) {
        if self.armed {
            self.stopped_expires_ns = self.expires(now);
            self.armed = false;
        }
    }
}

/// `now - since`. A negative interval (time read before the load, or a
/// count_load_time from the future in a migrated state) counts as no time at
/// all.
fn ns_since(now: u64, since: i64) -> u64 {
    match u64::try_from(since) {
        Ok(since) => now.saturating_sub(since),
        Err(_) => now.saturating_add(since.unsigned_abs()),
    }
}

fn ns_to_i64(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

// No 128-bit arithmetic below: a u128 division is a call to __udivti3,
// which the kernel's compiler_builtins defines as a panic. The products are
// split so that every intermediate fits 64 bits and the result is exact.

/// Input clock ticks in `ns` (upstream mul_u64_u32_div(t, KVM_PIT_FREQ,
/// NSEC_PER_SEC)), exact: with ns = q * 10^9 + r, the ticks are q * FREQ +
/// r * FREQ / 10^9, as q * FREQ is whole. Both terms fit: q * FREQ < 2^55,
/// r * FREQ < 2^51.
fn ticks(ns: u64) -> u64 {
    let whole = (ns / NSEC_PER_SEC) * PIT_FREQ_HZ;
    let part = (ns % NSEC_PER_SEC) * PIT_FREQ_HZ / NSEC_PER_SEC;
    whole + part
}

/// Nanoseconds of `count` ticks (upstream mul_u64_u32_div(val, NSEC_PER_SEC,
/// KVM_PIT_FREQ)); count * 10^9 < 2^62.
fn ticks_to_ns(count: u32) -> u64 {
    u64::from(count) * NSEC_PER_SEC / PIT_FREQ_HZ
}

/// Brings a channel loaded from userspace into the range port accesses
/// expect. Values with the same meaning upstream (its `default:` branches)
/// are mapped to the canonical one, so behaviour matches upstream's.
fn sanitize(c: &PitChannelState) -> PitChannelState {
    let state = |v: u8| if v <= RW_STATE_WORD1 { v } else { RW_STATE_LSB };
    PitChannelState {
        // Latched counts are only ever LSB, MSB or WORD0 pending.
        count_latched: if c.count_latched <= RW_STATE_WORD0 { c.count_latched } else { RW_STATE_LSB },
        status_latched: u8::from(c.status_latched != 0),
        read_state: state(c.read_state),
        write_state: state(c.write_state),
        // The control word's access field is two bits wide.
        rw_mode: c.rw_mode & 3,
        // Modes 6 and 7 are aliases of 2 and 3 (as a control word decodes
        // them); anything else is "no mode", as upstream's reset leaves it.
        mode: match c.mode {
            0..=5 => c.mode,
            6 | 7 => c.mode - 4,
            _ => PIT_MODE_NONE,
        },
        bcd: c.bcd & 1,
        gate: u8::from(c.gate != 0),
        ..*c
    }
}

/// The three channels, the flags of kvm_pit_state2 and channel 0's timer.
pub struct Pit {
    channels: [PitChannelState; 3],
    flags: u32,
    hr: Ch0Hrtimer,
    min_period_ns: u64,
}

impl Pit {
    /// A PIT as upstream's kvm_create_pit leaves it.
    pub fn new(now_ns: u64) -> Self {
        let mut pit = Self {
            channels: [PitChannelState::default(); 3],
            flags: 0,
            hr: Ch0Hrtimer::default(),
            min_period_ns: MIN_TIMER_PERIOD_NS,
        };
        pit.reset(now_ns);
        pit
    }

    /// Upstream kvm_pit_reset on a fresh PIT: no mode programmed, gates of
    /// channels 0 and 1 tied high, channel 2's gate low (port 0x61 bit 0),
    /// every count 0 (= 0x10000), channel 0's timer stopped.
    pub fn reset(&mut self, now_ns: u64) {
        self.flags = 0;
        self.hr = Ch0Hrtimer::default();
        for i in 0..3 {
            self.channels[i] = PitChannelState {
                mode: PIT_MODE_NONE,
                gate: u8::from(i != 2),
                ..PitChannelState::default()
            };
            self.load_count(i, 0, now_ns);
        }
    }

    /// Upstream's `min_timer_period_us` module parameter, in ns; applies from
    /// the next count load.
    pub fn set_min_timer_period_ns(&mut self, ns: u64) {
        self.min_period_ns = ns;
    }

    /// 0x40..=0x43 (0x61 is separate: speaker)
    pub fn handles_port(port: u16) -> bool {
        (PIT_BASE_PORT..=PIT_CONTROL_PORT).contains(&port)
    }

    /// Elapsed time since the channel's count started (see the module doc
    /// for channel 0).
    fn elapsed(&self, ch: usize, now: u64) -> u64 {
        if ch == 0 {
            return self.hr.elapsed(now);
        }
        match self.channels.get(ch) {
            Some(c) => ns_since(now, c.count_load_time),
            None => 0,
        }
    }

    /// Upstream pit_get_count: the counting element at `now`.
    fn count_at(&self, ch: usize, now: u64) -> u32 {
        let Some(c) = self.channels.get(ch) else { return 0 };
        let d = ticks(self.elapsed(ch, now));
        let count = u64::from(c.count);
        // A loaded count is never 0 (0 loads as 0x10000); rem by 0 can only
        // come from a bug, and reads then as 0 ticks into the period.
        let rem = |x: u64| x.checked_rem(count).unwrap_or(0);
        let v = match c.mode {
            // One-shot modes: the counter wraps to 0xffff and keeps going.
            0 | 1 | 4 | 5 => count.wrapping_sub(d) & 0xffff,
            // Square wave counts down by two per tick (approximation kept
            // from upstream: odd counts are off by one half-period).
            3 => count.wrapping_sub(rem(d.wrapping_mul(2))),
            // Mode 2 and "no mode": reload at every period.
            _ => count.wrapping_sub(rem(d)),
        };
        v as u32
    }

    /// Upstream pit_get_out: the OUT pin at `now`.
    fn out_at(&self, ch: usize, now: u64) -> bool {
        let Some(c) = self.channels.get(ch) else { return false };
        let d = ticks(self.elapsed(ch, now));
        let count = u64::from(c.count);
        let rem = d.checked_rem(count).unwrap_or(0);
        match c.mode {
            1 => d < count,
            2 => rem == 0 && d != 0,
            3 => rem < (count + 1) >> 1,
            4 | 5 => d == count,
            // Mode 0 and "no mode": high once the count ran out.
            _ => d >= count,
        }
    }

    fn latch_count(&mut self, ch: usize, now: u64) {
        let count = self.count_at(ch, now);
        if let Some(c) = self.channels.get_mut(ch) {
            // A second latch before the first was read is ignored (8254).
            if c.count_latched == 0 {
                c.latched_count = count as u16;
                c.count_latched = c.rw_mode;
            }
        }
    }

    fn latch_status(&mut self, ch: usize, now: u64) {
        let out = u32::from(self.out_at(ch, now));
        if let Some(c) = self.channels.get_mut(ch) {
            if c.status_latched == 0 {
                // Bit 6 (null count) is never reported, as upstream. The
                // "no mode" value 0xff spills into the low bits, also as
                // upstream (the expression is truncated to the u8 field).
                let status = (out << 7)
                    | (u32::from(c.rw_mode) << 4)
                    | (u32::from(c.mode) << 1)
                    | u32::from(c.bcd);
                c.status = status as u8;
                c.status_latched = 1;
            }
        }
    }

    /// Arms channel 0's timer for `count` ticks, as upstream create_pit_timer.
    /// Returns whether the timer changed.
    fn create_ch0_timer(&mut self, count: u32, periodic: bool, now: u64) -> bool {
        // With the HPET in legacy mode the PIT's IRQ 0 is disconnected;
        // upstream leaves the (already stopped) timer alone.
        if self.flags & PIT_FLAGS_HPET_LEGACY != 0 {
            return false;
        }
        let interval = ticks_to_ns(count);
        // Only the period is raised to the minimum; the first expiry keeps
        // the programmed interval, as upstream.
        let period = if periodic { interval.max(self.min_period_ns) } else { interval };
        self.hr = Ch0Hrtimer {
            period_ns: period,
            periodic,
            armed: true,
            first_ns: now.saturating_add(interval),
            stopped_expires_ns: 0,
        };
        true
    }

    /// Upstream pit_load_count. Returns whether channel 0's timer changed.
    fn load_count(&mut self, ch: usize, val: u32, now: u64) -> bool {
        // A count of 0 is the largest: 2^16 binary (10^4 BCD is not modelled,
        // as upstream).
        let val = if val == 0 { 0x10000 } else { val };
        let Some(c) = self.channels.get_mut(ch) else { return false };
        c.count = val;
        if ch != 0 {
            c.count_load_time = ns_to_i64(now);
            return false;
        }
        match c.mode {
            0 | 1 | 4 => self.create_ch0_timer(val, false, now),
            2 | 3 => self.create_ch0_timer(val, true, now),
            // Mode 5 waits for a gate edge that channel 0 never sees, and
            // "no mode" does not count: no timer.
            _ => {
                self.hr.stop(now);
                true
            }
        }
    }

    /// Upstream kvm_pit_load_count: `hpet_legacy_start` loads channel 0 with
    /// its timer forced off (the HPET has just taken over IRQ 0).
    fn load_count_hpet(&mut self, ch: usize, val: u32, hpet_legacy_start: bool, now: u64) -> bool {
        if !(hpet_legacy_start && ch == 0) {
            return self.load_count(ch, val, now);
        }
        let saved = self.channels[0].mode;
        self.channels[0].mode = PIT_MODE_NONE;
        let changed = self.load_count(0, val, now);
        self.channels[0].mode = saved;
        changed
    }

    fn set_gate(&mut self, ch: usize, val: u8, now: u64) {
        let Some(c) = self.channels.get_mut(ch) else { return };
        // Modes 1, 2, 3 and 5 restart counting on a rising edge; modes 0 and
        // 4 should pause while the gate is low, which upstream does not model.
        if matches!(c.mode, 1 | 2 | 3 | 5) && c.gate < val {
            c.count_load_time = ns_to_i64(now);
        }
        c.gate = val;
    }

    /// A byte read of ports 0x40-0x43 (0 for any other port).
    pub fn port_read(&mut self, port: u16, now_ns: u64) -> u8 {
        if !Self::handles_port(port) {
            return 0;
        }
        let ch = usize::from(port - PIT_BASE_PORT);
        // The control word register is write-only; upstream completes the
        // read without data.
        if ch == 3 {
            return 0;
        }
        let count = self.count_at(ch, now_ns);
        let Some(c) = self.channels.get_mut(ch) else { return 0 };
        let lo = |v: u32| (v & 0xff) as u8;
        let hi = |v: u32| ((v >> 8) & 0xff) as u8;
        // A latched status is read before a latched count (read-back
        // command latching both), and latches before the live counter.
        if c.status_latched != 0 {
            c.status_latched = 0;
            return c.status;
        }
        if c.count_latched != 0 {
            let latched = u32::from(c.latched_count);
            return match c.count_latched {
                RW_STATE_MSB => {
                    c.count_latched = 0;
                    hi(latched)
                }
                RW_STATE_WORD0 => {
                    c.count_latched = RW_STATE_MSB;
                    lo(latched)
                }
                _ => {
                    c.count_latched = 0;
                    lo(latched)
                }
            };
        }
        match c.read_state {
            RW_STATE_MSB => hi(count),
            RW_STATE_WORD0 => {
                c.read_state = RW_STATE_WORD1;
                lo(count)
            }
            RW_STATE_WORD1 => {
                c.read_state = RW_STATE_WORD0;
                hi(count)
            }
            _ => lo(count),
        }
    }

    /// Returns true when channel 0 was (re)programmed or stopped: the glue re-arms its hrtimer from ch0_timer().
    pub fn port_write(&mut self, port: u16, val: u8, now_ns: u64) -> bool {
        if !Self::handles_port(port) {
            return false;
        }
        let addr = usize::from(port - PIT_BASE_PORT);
        if addr == 3 {
            self.control_write(val, now_ns);
            return false;
        }
        let Some(c) = self.channels.get_mut(addr) else { return false };
        let val = u32::from(val);
        match c.write_state {
            RW_STATE_MSB => self.load_count(addr, val << 8, now_ns),
            RW_STATE_WORD0 => {
                c.write_latch = val as u8;
                c.write_state = RW_STATE_WORD1;
                false
            }
            RW_STATE_WORD1 => {
                let count = u32::from(c.write_latch) | (val << 8);
                c.write_state = RW_STATE_WORD0;
                self.load_count(addr, count, now_ns)
            }
            _ => self.load_count(addr, val, now_ns),
        }
    }

    /// A write to port 0x43. Channel 0's timer is untouched: upstream only
    /// reprograms it when a count is loaded.
    fn control_write(&mut self, val: u8, now: u64) {
        let ch = usize::from(val >> 6);
        if ch == 3 {
            // Read-back: bits 3:1 select channels, bit 5 clear latches the
            // count, bit 4 clear latches the status.
            for i in 0..3 {
                if val & (2 << i) != 0 {
                    if val & 0x20 == 0 {
                        self.latch_count(i, now);
                    }
                    if val & 0x10 == 0 {
                        self.latch_status(i, now);
                    }
                }
            }
            return;
        }
        let access = (val >> 4) & 3;
        if access == 0 {
            self.latch_count(ch, now);
            return;
        }
        if let Some(c) = self.channels.get_mut(ch) {
            c.rw_mode = access;
            c.read_state = access;
            c.write_state = access;
            // Modes 6 and 7 are "don't care" duplicates of 2 and 3.
            let mode = (val >> 1) & 7;
            c.mode = if mode > 5 { mode - 4 } else { mode };
            c.bcd = val & 1;
        }
    }

    /// Port 0x61 as upstream speaker_ioport_read: bit 0 gate 2, bit 1 speaker
    /// data, bit 4 the DRAM refresh toggle, bit 5 channel 2's OUT.
    pub fn speaker_read(&self, now_ns: u64) -> u8 {
        // The refresh request toggles about every 15 us; upstream
        // approximates it with bit 14 of the host clock, and BIOSes use it
        // for delay loops, so it must move.
        let refresh = ((now_ns >> 14) & 1) as u8;
        let data_on = u8::from(self.flags & PIT_FLAGS_SPEAKER_DATA_ON != 0);
        let gate2 = self.channels[2].gate & 1;
        let out2 = u8::from(self.out_at(2, now_ns));
        (data_on << 1) | gate2 | (refresh << 4) | (out2 << 5)
    }

    /// Port 0x61 writes: bit 0 is channel 2's gate, bit 1 the speaker data
    /// enable (kept only to read it back).
    pub fn speaker_write(&mut self, val: u8, now_ns: u64) {
        if val & 2 != 0 {
            self.flags |= PIT_FLAGS_SPEAKER_DATA_ON;
        } else {
            self.flags &= !PIT_FLAGS_SPEAKER_DATA_ON;
        }
        self.set_gate(2, val & 1, now_ns);
    }

    /// Channel 0's schedule as last armed, or None while its timer is
    /// stopped (HPET legacy mode, no count loaded in a counting mode, mode 5).
    /// A count write in progress (LSB of a word written) leaves the previous
    /// schedule running, as upstream. A one-shot whose `first_ns` has passed
    /// has already fired.
    pub fn ch0_timer(&self) -> Option<Ch0Timer> {
        if !self.hr.armed {
            return None;
        }
        Some(Ch0Timer {
            first_ns: self.hr.first_ns,
            period_ns: self.hr.periodic.then_some(self.hr.period_ns),
        })
    }

    /// KVM_GET_PIT2 (KVM_GET_PIT: `.channels`).
    pub fn state(&self) -> PitState {
        PitState { channels: self.channels, flags: self.flags }
    }

    /// KVM_SET_PIT2/KVM_SET_PIT: loads state as upstream (kvm_vm_ioctl_set_pit2: channel 0's count reloaded via the same path as a count write so the timer restarts; HPET legacy flag transitions). Returns true if ch0 timer must be re-armed.
    ///
    /// Every channel's count is reloaded at `now_ns`, so channels 1 and 2
    /// restart counting and their `count_load_time` is replaced, as upstream.
    /// Fields out of range are brought into range first (see `sanitize`).
    pub fn set_state(&mut self, s: &PitState, now_ns: u64) -> bool {
        let was_legacy = self.flags & PIT_FLAGS_HPET_LEGACY != 0;
        let is_legacy = s.flags & PIT_FLAGS_HPET_LEGACY != 0;
        // Entering HPET legacy mode stops channel 0's timer; once in it,
        // loads leave the timer alone (create_ch0_timer).
        let hpet_start = !was_legacy && is_legacy;
        self.flags = s.flags;
        self.load_channels(&s.channels, hpet_start, now_ns)
    }

    /// KVM_SET_PIT (the first version, without flags): channels only, the
    /// flags are kept.
    pub fn set_channels(&mut self, channels: &[PitChannelState; 3], now_ns: u64) -> bool {
        self.load_channels(channels, false, now_ns)
    }

    fn load_channels(&mut self, channels: &[PitChannelState; 3], hpet_start: bool, now: u64) -> bool {
        for (dst, src) in self.channels.iter_mut().zip(channels) {
            *dst = sanitize(src);
        }
        let mut ch0 = false;
        for i in 0..3 {
            let count = self.channels[i].count;
            let changed = self.load_count_hpet(i, count, hpet_start, now);
            ch0 |= i == 0 && changed;
        }
        ch0
    }
}

#[cfg(test)]
#[path = "pit_tests.rs"]
mod tests;
