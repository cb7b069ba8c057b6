//! Round robin over the usable backends.
//!
//! Round robin rather than least connections: backend connections are pooled and reused (or,
//! with PROXY headers, one per connection), so open connection counts say little about a
//! backend's load, and a counter is lock-free.

/// The indices of the usable backends, rotated by `turn` (a counter bumped per request), so
/// each usable backend comes first in turn: the first is the one to use, the rest are tried if
/// connecting to it fails.
pub fn order(usable: &[bool], turn: usize) -> Vec<usize> {
    let mut candidates: Vec<usize> = (0..usable.len()).filter(|&i| usable[i]).collect();
    if !candidates.is_empty() {
        let k = candidates.len();
        candidates.rotate_left(turn % k);
    }
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_go_round_the_backends() {
        let usable = [true, true, true];
        let firsts: Vec<usize> = (0..6).map(|t| order(&usable, t)[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        assert_eq!(order(&usable, 1), [1, 2, 0]);
    }

    #[test]
    fn unusable_backends_are_skipped() {
        let usable = [true, false, true];
        let firsts: Vec<usize> = (0..4).map(|t| order(&usable, t)[0]).collect();
        assert_eq!(firsts, [0, 2, 0, 2]);
        assert_eq!(order(&[false, false], 3), Vec::<usize>::new());
        assert_eq!(order(&[], 3), Vec::<usize>::new());
    }
}
