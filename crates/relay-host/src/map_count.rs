//! Linux caps the memory mappings of a process (`vm.max_map_count`, 65,530 by
//! default), and a pool of instances is made of mappings: each slot's async call
//! stack costs two as soon as the pool exists (a guard page splits it), each live
//! instance about four more (the accessible parts of its memories). A host with
//! thousands of tenants can run out of them long before it runs out of memory,
//! and wasmtime then reports only "Cannot allocate memory" for some tenant N.
//! This says so up front, with the numbers and the fix.

/// Mappings one live instance adds (measured: 4.0 per instance over 1,100
/// instances, `tests/pool.rs`'s setup).
pub const PER_INSTANCE: u64 = 4;

/// What to tell the operator when `in_use` mappings (the pool included) and
/// `limit` leave room for fewer than `slots` live instances, or `None`.
pub fn shortfall(in_use: u64, limit: u64, slots: u32) -> Option<String> {
    let room = limit.saturating_sub(in_use) / PER_INSTANCE;
    if room >= u64::from(slots) {
        return None;
    }
    let needed = in_use + PER_INSTANCE * u64::from(slots);
    Some(format!(
        "vm.max_map_count is {limit} and this process already has {in_use} memory mappings \
         (the instance pool's call stacks included): about {room} of the pool's {slots} \
         instance slots can be used (a tenant holds one, two while it is rebuilt; each costs \
         ~{PER_INSTANCE} mappings), so tenants beyond that will fail to start with \"Cannot \
         allocate memory\". Raise it to at least {needed} (sysctl -w vm.max_map_count={needed}) \
         or spread the tenants over more processes (--shard K/N)"
    ))
}

/// Reads the process's mapping count and the cap (Linux; `None` elsewhere or
/// when /proc is not readable).
pub fn current() -> Option<(u64, u64)> {
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?;
    let maps = std::fs::read("/proc/self/maps").ok()?;
    let in_use = memchr::memchr_iter(b'\n', &maps).count() as u64;
    Some((in_use, limit.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_for_every_slot_says_nothing() {
        assert_eq!(shortfall(1_000, 65_530, 16_000), None);
        assert_eq!(shortfall(1_000, 65_530, 16_132), None); // (65,530 - 1,000) / 4
    }

    #[test]
    fn too_little_room_gives_the_numbers_and_the_fix() {
        // 10,000 tenants: 20,008 slots, their stacks mapped up front.
        let msg = shortfall(41_000, 65_530, 20_008).expect("a shortfall");
        assert!(msg.contains("vm.max_map_count is 65530"), "{msg}");
        assert!(msg.contains("about 6132 of the pool's 20008"), "{msg}");
        assert!(msg.contains("sysctl -w vm.max_map_count=121032"), "{msg}");
        assert_eq!(shortfall(1_000, 65_530, 16_133).map(|_| ()), Some(()));
        // Already over the cap: no room at all, no underflow.
        assert!(shortfall(70_000, 65_530, 10)
            .unwrap()
            .contains("about 0 of"));
    }

    #[test]
    fn reads_this_process() {
        if let Some((in_use, limit)) = current() {
            assert!(in_use > 10 && limit > 0, "{in_use} of {limit}");
        }
    }
}
