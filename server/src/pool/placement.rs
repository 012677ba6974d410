//! Where a token without a session gets its new one: a weighted random choice among the
//! servers that take new sessions, each weighted by its room (configured capacity minus
//! sessions) times how idle its CPU and memory are, in the spirit of Sun Ray's
//! "desirability". Random rather than "least loaded": during a login rush every server decides
//! from loads a second old, and all of them sending everyone to the same least-loaded server
//! would pile up there; weighted chance spreads the rush in proportion to room.

use super::view::PoolView;

/// Below this a busy CPU or full memory still leaves a server some chance: load figures are
/// a second old, and a momentary spike should not remove a server from the pool.
const MIN_FACTOR: f64 = 0.05;

/// The server to place a new session on, from `view`. `r` is uniform in `[0, 1)`. `None` when
/// no server takes new sessions (all drained, or the view is empty): the caller places it on
/// itself, since refusing a user is worse than an overfull server.
pub fn choose(view: &PoolView, r: f64) -> Option<String> {
    let candidates: Vec<(&String, f64)> = view
        .servers
        .iter()
        .filter(|(name, _)| !view.drained.contains(*name))
        .map(|(name, s)| (name, weight(s)))
        .collect();
    let total: f64 = candidates.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        // Every server is full: the least full by share of its capacity.
        return candidates
            .iter()
            .map(|(name, _)| (*name, fullness(&view.servers[*name])))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(name, _)| name.clone());
    }
    let mut point = r.clamp(0.0, 1.0) * total;
    for (name, w) in &candidates {
        if point < *w {
            return Some((*name).clone());
        }
        point -= w;
    }
    candidates.last().map(|(name, _)| (*name).clone())
}

fn weight(s: &super::keys::ServerRecord) -> f64 {
    let room = f64::from(s.capacity.saturating_sub(s.load.sessions));
    let cpu_idle = (1.0 - f64::from(s.load.cpu_permille) / 1000.0).max(MIN_FACTOR);
    let memory_free = if s.load.memory_total == 0 {
        1.0
    } else {
        let used = s.load.memory_used as f64 / s.load.memory_total as f64;
        (1.0 - used).max(MIN_FACTOR)
    };
    room * cpu_idle * memory_free
}

fn fullness(s: &super::keys::ServerRecord) -> f64 {
    f64::from(s.load.sessions) / f64::from(s.capacity.max(1))
}

#[cfg(test)]
mod tests {
    use super::super::keys::{Load, ServerRecord};
    use super::*;

    fn server(view: &mut PoolView, name: &str, capacity: u32, sessions: u32, cpu_permille: u32) {
        view.servers.insert(
            name.into(),
            ServerRecord {
                name: name.into(),
                address: String::new(),
                fingerprint: String::new(),
                capacity,
                load: Load {
                    sessions,
                    cpu_permille,
                    memory_used: 0,
                    memory_total: 0,
                },
            },
        );
    }

    fn spread(view: &PoolView, n: usize) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..n {
            let r = (i as f64 + 0.5) / n as f64;
            *counts.entry(choose(view, r).unwrap()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn choices_follow_room_and_idle_cpu() {
        let mut view = PoolView::default();
        server(&mut view, "a", 100, 0, 0);
        server(&mut view, "b", 100, 50, 0);
        server(&mut view, "c", 100, 0, 500);
        // Weights 100, 50, 50: a half, b and c a quarter each.
        let counts = spread(&view, 400);
        assert_eq!(counts["a"], 200);
        assert_eq!(counts["b"], 100);
        assert_eq!(counts["c"], 100);
    }

    #[test]
    fn drained_servers_get_nothing_and_full_ones_least() {
        let mut view = PoolView::default();
        server(&mut view, "a", 10, 0, 0);
        server(&mut view, "b", 10, 0, 0);
        view.drained.insert("a".into());
        assert_eq!(spread(&view, 50).keys().collect::<Vec<_>>(), ["b"]);

        let mut full = PoolView::default();
        server(&mut full, "a", 10, 30, 0);
        server(&mut full, "b", 20, 30, 0);
        assert_eq!(
            choose(&full, 0.3).as_deref(),
            Some("b"),
            "the least full by share"
        );

        let mut all_drained = PoolView::default();
        server(&mut all_drained, "a", 10, 0, 0);
        all_drained.drained.insert("a".into());
        assert_eq!(choose(&all_drained, 0.5), None);
        assert_eq!(choose(&PoolView::default(), 0.5), None);
    }

    #[test]
    fn a_busy_cpu_leaves_a_small_chance() {
        let mut view = PoolView::default();
        server(&mut view, "a", 100, 0, 1000);
        server(&mut view, "b", 100, 0, 0);
        let counts = spread(&view, 1000);
        assert!(counts.get("a").copied().unwrap_or(0) > 0);
        assert!(counts["b"] > 900);
    }
}
