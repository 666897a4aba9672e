//! Servers-of-happiness: how many servers could each contribute a *different* share.
//!
//! Happiness is the size of a maximum matching in the bipartite graph servers × share numbers,
//! with an edge wherever a server holds (or will hold) a share (tahoe-formats.md §7.2). An upload
//! with happiness `h >= k` survives the loss of any `h - k` of those servers. We compute it with
//! Hopcroft–Karp (O(E·√V)), written iteratively so long augmenting paths cannot overflow the stack.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Servers-of-happiness of a layout (server → the share numbers it holds).
///
/// A server holding many shares still counts once; a share held by many servers still counts once.
pub fn happiness<S: Ord>(placements: &BTreeMap<S, BTreeSet<u16>>) -> usize {
    let adj: Vec<Vec<u16>> = placements
        .values()
        .map(|s| s.iter().copied().collect())
        .collect();
    match_servers(&adj).size
}

/// One maximum matching of a layout, as share number → the server it is counted on.
///
/// Its length is [`happiness`]. Ties are broken deterministically (by key order, then share order).
pub fn maximum_matching<S: Ord + Clone>(
    placements: &BTreeMap<S, BTreeSet<u16>>,
) -> BTreeMap<u16, S> {
    let keys: Vec<&S> = placements.keys().collect();
    let adj: Vec<Vec<u16>> = placements
        .values()
        .map(|s| s.iter().copied().collect())
        .collect();
    let m = match_servers(&adj);
    m.by_server
        .iter()
        .enumerate()
        .filter_map(|(i, share)| share.map(|sh| (sh, keys[i].clone())))
        .collect()
}

/// A maximum matching over servers numbered `0..adj.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matching {
    /// The share each server is matched to, if any.
    pub(crate) by_server: Vec<Option<u16>>,
    /// Number of matched pairs (the happiness).
    pub(crate) size: usize,
}

const UNREACHED: u32 = u32::MAX;

/// Hopcroft–Karp over `adj[server] = shares it holds` (duplicates and any order are fine).
pub(crate) fn match_servers(adj: &[Vec<u16>]) -> Matching {
    let n_left = adj.len();
    let n_right = adj
        .iter()
        .flatten()
        .map(|&s| usize::from(s) + 1)
        .max()
        .unwrap_or(0);
    let mut match_l: Vec<Option<usize>> = vec![None; n_left];
    let mut match_r: Vec<Option<usize>> = vec![None; n_right];
    let mut size = 0;

    // A greedy pass finds most of the matching cheaply; the phases below repair the rest.
    for (u, edges) in adj.iter().enumerate() {
        if let Some(&v) = edges.iter().find(|&&v| match_r[usize::from(v)].is_none()) {
            match_l[u] = Some(usize::from(v));
            match_r[usize::from(v)] = Some(u);
            size += 1;
        }
    }

    let mut dist = vec![UNREACHED; n_left];
    let mut next_edge = vec![0usize; n_left];
    loop {
        // Layer the graph from every free server along alternating paths.
        let mut queue = VecDeque::new();
        for u in 0..n_left {
            if match_l[u].is_none() {
                dist[u] = 0;
                queue.push_back(u);
            } else {
                dist[u] = UNREACHED;
            }
        }
        let mut reaches_free_share = false;
        while let Some(u) = queue.pop_front() {
            for &v in &adj[u] {
                match match_r[usize::from(v)] {
                    None => reaches_free_share = true,
                    Some(w) if dist[w] == UNREACHED => {
                        dist[w] = dist[u] + 1;
                        queue.push_back(w);
                    }
                    Some(_) => {}
                }
            }
        }
        if !reaches_free_share {
            break;
        }
        next_edge.iter_mut().for_each(|e| *e = 0);
        for root in 0..n_left {
            if match_l[root].is_none()
                && augment(
                    root,
                    adj,
                    &mut match_l,
                    &mut match_r,
                    &mut dist,
                    &mut next_edge,
                )
            {
                size += 1;
            }
        }
    }

    let by_server = match_l
        .iter()
        .map(|m| m.map(|v| u16::try_from(v).unwrap_or(u16::MAX)))
        .collect();
    Matching { by_server, size }
}

/// Grows a matching that is maximum over `adj` by one, using exactly one *new* edge: from the
/// lowest unmatched share to one of the `flexible` servers (servers that could still be asked to
/// store any share), tried in the given order of preference. Returns that new edge as
/// `(server, share)` after adding it to `adj` and flipping the path into `matching`, or `None`
/// when no such path exists (then no single new share request can raise happiness).
///
/// One new edge always suffices: every flexible server is reachable from any unmatched share, so
/// a path that used a new edge later could start with it instead.
pub(crate) fn augment_through_new_edge(
    adj: &mut [Vec<u16>],
    matching: &mut Matching,
    n_shares: usize,
    flexible: &[usize],
) -> Option<(usize, u16)> {
    let n_servers = adj.len();
    let mut owner: Vec<Option<usize>> = vec![None; n_shares];
    for (server, share) in matching.by_server.iter().enumerate() {
        if let Some(slot) = share.and_then(|x| owner.get_mut(usize::from(x))) {
            *slot = Some(server);
        }
    }
    let root = (0..n_shares).find(|&x| owner[x].is_none())?;
    let root_u16 = u16::try_from(root).ok()?;
    let mut holders: Vec<Vec<usize>> = vec![Vec::new(); n_shares];
    for (server, edges) in adj.iter().enumerate() {
        for &x in edges {
            if let Some(h) = holders.get_mut(usize::from(x)) {
                h.push(server);
            }
        }
    }

    // parent[s] = the share through which the search reached server s.
    let mut parent: Vec<Option<usize>> = vec![None; n_servers];
    let mut queue = VecDeque::new();
    for &s in flexible {
        if s < n_servers && parent[s].is_none() && !adj[s].contains(&root_u16) {
            parent[s] = Some(root);
            queue.push_back(s);
        }
    }
    let mut end = None;
    while let Some(s) = queue.pop_front() {
        match matching.by_server[s] {
            None => {
                end = Some(s);
                break;
            }
            Some(y) => {
                for &t in &holders[usize::from(y)] {
                    if parent[t].is_none() && t != s {
                        parent[t] = Some(usize::from(y));
                        queue.push_back(t);
                    }
                }
            }
        }
    }

    let mut s = end?;
    loop {
        let x = parent[s]?;
        let previous = owner[x];
        matching.by_server[s] = u16::try_from(x).ok();
        match previous {
            Some(p) => s = p,
            None => break,
        }
    }
    adj[s].push(root_u16);
    matching.size += 1;
    Some((s, root_u16))
}

/// Depth-first search for one augmenting path from `root` inside the current layering; flips it
/// if found. `stack[i] --via[i]--> stack[i+1]` are the alternating edges walked so far.
fn augment(
    root: usize,
    adj: &[Vec<u16>],
    match_l: &mut [Option<usize>],
    match_r: &mut [Option<usize>],
    dist: &mut [u32],
    next_edge: &mut [usize],
) -> bool {
    let mut stack = vec![root];
    let mut via: Vec<usize> = Vec::new();
    while let Some(&u) = stack.last() {
        if let Some(&v) = adj[u].get(next_edge[u]) {
            next_edge[u] += 1;
            let v = usize::from(v);
            match match_r[v] {
                None => {
                    via.push(v);
                    for (&server, &share) in stack.iter().zip(&via) {
                        match_l[server] = Some(share);
                        match_r[share] = Some(server);
                    }
                    return true;
                }
                Some(w) if dist[w] == dist[u].saturating_add(1) => {
                    via.push(v);
                    stack.push(w);
                }
                Some(_) => {}
            }
        } else {
            // Dead end: no augmenting path goes through `u` in this phase.
            dist[u] = UNREACHED;
            stack.pop();
            via.pop();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout(pairs: &[(&'static str, &[u16])]) -> BTreeMap<&'static str, BTreeSet<u16>> {
        pairs
            .iter()
            .map(|(s, shares)| (*s, shares.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn empty_layout_has_no_happiness() {
        assert_eq!(happiness::<u8>(&BTreeMap::new()), 0);
        assert_eq!(happiness(&layout(&[("a", &[]), ("b", &[])])), 0);
    }

    #[test]
    fn one_server_with_every_share_counts_once() {
        let all: Vec<u16> = (0..10).collect();
        assert_eq!(happiness(&layout(&[("a", &all)])), 1);
    }

    /// servers-of-happiness.rst: k = 3, ten servers each holding all three shares is a "happy
    /// subset" of 10, but the matching (and so Tahoe) counts only 3.
    #[test]
    fn ten_servers_with_the_same_three_shares_count_three() {
        let names = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        let pairs: Vec<(&'static str, &[u16])> =
            names.iter().map(|n| (*n, &[0u16, 1, 2][..])).collect();
        assert_eq!(happiness(&layout(&pairs)), 3);
    }

    /// test_happiness.py: four servers with one distinct share each, then a duplicate server.
    #[test]
    fn distinct_shares_on_distinct_servers() {
        assert_eq!(
            happiness(&layout(&[
                ("s1", &[1]),
                ("s2", &[2]),
                ("s3", &[3]),
                ("s4", &[4])
            ])),
            4
        );
        // share 4 moved onto server 1 as well: server 4 gone, so 3.
        assert_eq!(
            happiness(&layout(&[("s1", &[1, 4]), ("s2", &[2]), ("s3", &[3])])),
            3
        );
        // plus servers 5..8 each holding a new share: 7.
        assert_eq!(
            happiness(&layout(&[
                ("s1", &[1, 4]),
                ("s2", &[2]),
                ("s3", &[3]),
                ("s5", &[5]),
                ("s6", &[6]),
                ("s7", &[7]),
                ("s8", &[8]),
            ])),
            7
        );
    }

    /// test_happiness.py: overlap where an augmenting path is needed (server 6 holds 3 and 5).
    #[test]
    fn overlap_needs_augmenting_path() {
        assert_eq!(
            happiness(&layout(&[
                ("s1", &[1]),
                ("s2", &[2]),
                ("s3", &[3]),
                ("s4", &[4]),
                ("s5", &[4]),
                ("s6", &[3, 5]),
            ])),
            5
        );
    }

    /// Zooko's puzzles from Tahoe ticket #778 (quoted in test_happiness.py).
    #[test]
    fn zookos_puzzles() {
        assert_eq!(
            happiness(&layout(&[("s1", &[0, 1]), ("s2", &[1, 2]), ("s3", &[2])])),
            3
        );
        assert_eq!(happiness(&layout(&[("s1", &[0, 1]), ("s2", &[1])])), 2);
    }

    /// A greedy first pass picks a→0, b→1 and leaves c stuck; the augmenting path
    /// c→0, a→1, b→2 finds the perfect matching.
    #[test]
    fn greedy_trap_is_repaired() {
        let l = layout(&[("a", &[0, 1]), ("b", &[1, 2]), ("c", &[0])]);
        assert_eq!(happiness(&l), 3);
        let m = maximum_matching(&l);
        assert_eq!(m.len(), 3);
        assert_eq!(m[&0], "c");
        assert_eq!(m[&1], "a");
        assert_eq!(m[&2], "b");
    }

    /// Server i (i < 5000) holds shares i and i+1 and greedily takes share i; a last server
    /// holding only share 0 then needs a 5000-step augmenting path, which must not overflow.
    #[test]
    fn long_augmenting_path_does_not_overflow() {
        let mut l: BTreeMap<u32, BTreeSet<u16>> = BTreeMap::new();
        for i in 0..5_000u16 {
            l.insert(u32::from(i), [i, i + 1].into_iter().collect());
        }
        l.insert(5_000, [0u16].into_iter().collect());
        assert_eq!(happiness(&l), 5_001);
    }

    /// W holds 0 (matched), R1 holds 0 (unmatched), R2 holds 1 and 2. Only W may take a new
    /// share: giving it share 2 lets R1 count through share 0.
    #[test]
    fn one_new_edge_through_an_augmenting_path() {
        let mut adj = vec![vec![0u16], vec![0], vec![1, 2]];
        let mut m = match_servers(&adj);
        assert_eq!(m.size, 2);
        assert_eq!(m.by_server[0], Some(0));
        let edge = augment_through_new_edge(&mut adj, &mut m, 3, &[0]);
        assert_eq!(edge, Some((0, 2)));
        assert_eq!(m.size, 3);
        assert_eq!(m.by_server, vec![Some(2), Some(0), Some(1)]);
        assert_eq!(adj[0], vec![0, 2]);
        // Every share is matched now: nothing more to gain.
        assert_eq!(
            augment_through_new_edge(&mut adj, &mut m, 3, &[0, 1, 2]),
            None
        );
    }

    #[test]
    fn no_new_edge_without_a_flexible_server_on_a_path() {
        // Server 0 holds share 0 and is the only flexible server; the free servers 1 and 2 hold
        // nothing and may not be asked, so no path ends at a free server.
        let mut adj = vec![vec![0u16], vec![], vec![]];
        let mut m = match_servers(&adj);
        assert_eq!(augment_through_new_edge(&mut adj, &mut m, 2, &[0]), None);
        // A free flexible server takes the lowest unmatched share directly.
        assert_eq!(
            augment_through_new_edge(&mut adj, &mut m, 2, &[2, 0]),
            Some((2, 1))
        );
        assert_eq!(m.size, 2);
    }

    /// Reference answer for tiny graphs: try every assignment.
    fn brute_force(adj: &[Vec<u16>]) -> usize {
        fn go(i: usize, adj: &[Vec<u16>], used: &mut BTreeSet<u16>) -> usize {
            if i == adj.len() {
                return 0;
            }
            let mut best = go(i + 1, adj, used);
            for &s in &adj[i] {
                if used.insert(s) {
                    best = best.max(1 + go(i + 1, adj, used));
                    used.remove(&s);
                }
            }
            best
        }
        go(0, adj, &mut BTreeSet::new())
    }

    proptest! {
        #[test]
        fn agrees_with_brute_force(
            adj in prop::collection::vec(prop::collection::btree_set(0u16..8, 0..5), 0..7)
        ) {
            let lists: Vec<Vec<u16>> = adj.iter().map(|s| s.iter().copied().collect()).collect();
            let m = match_servers(&lists);
            prop_assert_eq!(m.size, brute_force(&lists));
            // The matching is valid: each server's share is one it holds, no share twice.
            let mut seen = BTreeSet::new();
            for (i, sh) in m.by_server.iter().enumerate() {
                if let Some(sh) = sh {
                    prop_assert!(adj[i].contains(sh));
                    prop_assert!(seen.insert(*sh));
                }
            }
            prop_assert_eq!(seen.len(), m.size);
        }
    }
}
