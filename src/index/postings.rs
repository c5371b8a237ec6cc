//! Postings lists and their set algebra: sorted series references behind one small iterator trait,
//! with intersection, union and difference as adapters over it (Prometheus' `tsdb/index/postings.go`
//! semantics, tantivy's shape). Nothing here copies a list; combinators pull from their inputs.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A sorted, duplicate-free stream of series references with a cursor.
///
/// Both methods return the new current reference, or `None` once the stream is exhausted (after
/// which they keep returning `None`).
pub trait Postings {
    /// Advances to the next reference.
    fn next(&mut self) -> Option<u64>;
    /// Advances to the first reference >= `target`; does not move if the current one already is.
    fn seek(&mut self, target: u64) -> Option<u64>;
}

impl<P: Postings + ?Sized> Postings for Box<P> {
    fn next(&mut self) -> Option<u64> {
        (**self).next()
    }
    fn seek(&mut self, target: u64) -> Option<u64> {
        (**self).seek(target)
    }
}

/// Drains a postings stream into a vector.
pub fn collect(p: &mut dyn Postings) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(r) = p.next() {
        out.push(r);
    }
    out
}

/// The empty postings list.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmptyPostings;

impl Postings for EmptyPostings {
    fn next(&mut self) -> Option<u64> {
        None
    }
    fn seek(&mut self, _target: u64) -> Option<u64> {
        None
    }
}

/// Cursor over any random-access sorted sequence: `next` is the index of the next unread element,
/// so the current one is `next - 1`; `next > len` marks exhaustion.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    next: usize,
}

impl Cursor {
    #[inline]
    fn next(&mut self, len: usize, at: impl Fn(usize) -> u64) -> Option<u64> {
        if self.next < len {
            self.next += 1;
            Some(at(self.next - 1))
        } else {
            self.next = len + 1;
            None
        }
    }

    /// Galloping search from the cursor, so that intersecting a short list with a long one costs
    /// O(short * log(gap)) rather than a walk or a full binary search per step.
    fn seek(&mut self, len: usize, target: u64, at: impl Fn(usize) -> u64) -> Option<u64> {
        if self.next > len {
            return None;
        }
        if self.next > 0 {
            let cur = at(self.next - 1);
            if cur >= target {
                return Some(cur);
            }
        }
        let mut lo = self.next;
        let mut step = 1;
        let mut hi = lo;
        while hi < len && at(hi) < target {
            lo = hi + 1;
            hi = lo + step;
            step *= 2;
        }
        let mut hi = hi.min(len);
        // Invariant: everything before lo is < target, everything from hi on is >= target.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if at(mid) < target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < len {
            self.next = lo + 1;
            Some(at(lo))
        } else {
            self.next = len + 1;
            None
        }
    }
}

/// Postings over a borrowed sorted slice (the head's in-memory lists).
#[derive(Debug, Clone)]
pub struct ListPostings<'a> {
    list: &'a [u64],
    cur: Cursor,
}

impl<'a> ListPostings<'a> {
    /// `list` must be sorted and free of duplicates.
    pub fn new(list: &'a [u64]) -> Self {
        debug_assert!(list.windows(2).all(|w| w[0] < w[1]));
        ListPostings {
            list,
            cur: Cursor::default(),
        }
    }
}

impl Postings for ListPostings<'_> {
    #[inline]
    fn next(&mut self) -> Option<u64> {
        let l = self.list;
        self.cur.next(l.len(), |i| l[i])
    }
    fn seek(&mut self, target: u64) -> Option<u64> {
        let l = self.list;
        self.cur.seek(l.len(), target, |i| l[i])
    }
}

/// Postings over an owned sorted vector.
#[derive(Debug, Clone)]
pub struct VecPostings {
    list: Vec<u64>,
    cur: Cursor,
}

impl VecPostings {
    /// `list` must be sorted and free of duplicates.
    pub fn new(list: Vec<u64>) -> Self {
        debug_assert!(list.windows(2).all(|w| w[0] < w[1]));
        VecPostings {
            list,
            cur: Cursor::default(),
        }
    }
}

impl Postings for VecPostings {
    #[inline]
    fn next(&mut self) -> Option<u64> {
        let l = &self.list;
        self.cur.next(l.len(), |i| l[i])
    }
    fn seek(&mut self, target: u64) -> Option<u64> {
        let l = &self.list;
        self.cur.seek(l.len(), target, |i| l[i])
    }
}

/// Postings stored as big-endian 32-bit references, as in a block index's postings section. A
/// trailing partial entry is ignored (the index reader validates lengths before this).
#[derive(Debug, Clone)]
pub struct BigEndianPostings<'a> {
    data: &'a [u8],
    cur: Cursor,
}

impl<'a> BigEndianPostings<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BigEndianPostings {
            data,
            cur: Cursor::default(),
        }
    }

    /// Number of references.
    pub fn len(&self) -> usize {
        self.data.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[inline]
fn be_u32_at(data: &[u8], i: usize) -> u64 {
    match data.get(i * 4..).and_then(|s| s.first_chunk::<4>()) {
        Some(b) => u64::from(u32::from_be_bytes(*b)),
        None => u64::MAX,
    }
}

impl Postings for BigEndianPostings<'_> {
    fn next(&mut self) -> Option<u64> {
        let (d, n) = (self.data, self.len());
        self.cur.next(n, |i| be_u32_at(d, i))
    }
    fn seek(&mut self, target: u64) -> Option<u64> {
        let (d, n) = (self.data, self.len());
        self.cur.seek(n, target, |i| be_u32_at(d, i))
    }
}

/// Intersection: references present in every input. No inputs give the empty list.
pub fn intersect<'a>(mut lists: Vec<Box<dyn Postings + 'a>>) -> Box<dyn Postings + 'a> {
    match lists.len() {
        0 => Box::new(EmptyPostings),
        1 => lists.swap_remove(0),
        _ => Box::new(Intersect {
            lists,
            cur: None,
            done: false,
        }),
    }
}

struct Intersect<'a> {
    lists: Vec<Box<dyn Postings + 'a>>,
    cur: Option<u64>,
    done: bool,
}

impl Intersect<'_> {
    /// Seeks every input to `target`, raising it until all agree.
    fn align(&mut self, mut target: u64) -> Option<u64> {
        'outer: loop {
            for p in &mut self.lists {
                match p.seek(target) {
                    None => return self.finish(),
                    Some(r) if r > target => {
                        target = r;
                        continue 'outer;
                    }
                    Some(_) => {}
                }
            }
            self.cur = Some(target);
            return self.cur;
        }
    }

    fn finish(&mut self) -> Option<u64> {
        self.done = true;
        self.cur = None;
        None
    }
}

impl Postings for Intersect<'_> {
    fn next(&mut self) -> Option<u64> {
        if self.done {
            return None;
        }
        let mut target = 0;
        for p in &mut self.lists {
            match p.next() {
                None => return self.finish(),
                Some(r) => target = target.max(r),
            }
        }
        self.align(target)
    }

    fn seek(&mut self, target: u64) -> Option<u64> {
        if self.done {
            return None;
        }
        match self.cur {
            Some(c) if c >= target => Some(c),
            _ => self.align(target),
        }
    }
}

/// Union without duplicates: the inputs' current references sit in a binary heap (Prometheus' way).
pub fn merge<'a>(mut lists: Vec<Box<dyn Postings + 'a>>) -> Box<dyn Postings + 'a> {
    match lists.len() {
        0 => Box::new(EmptyPostings),
        1 => lists.swap_remove(0),
        _ => Box::new(Merge {
            lists,
            heap: BinaryHeap::new(),
            cur: None,
            started: false,
        }),
    }
}

struct Merge<'a> {
    lists: Vec<Box<dyn Postings + 'a>>,
    /// (current reference, input index) of every input not yet exhausted.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    cur: Option<u64>,
    started: bool,
}

impl Merge<'_> {
    fn start(&mut self, seek: Option<u64>) {
        self.started = true;
        self.heap.reserve(self.lists.len());
        for (i, p) in self.lists.iter_mut().enumerate() {
            let r = match seek {
                None => p.next(),
                Some(t) => p.seek(t),
            };
            if let Some(r) = r {
                self.heap.push(Reverse((r, i)));
            }
        }
        self.cur = self.heap.peek().map(|Reverse((r, _))| *r);
    }

    /// Moves every input whose current reference is below `target` (or equal, if `inclusive`)
    /// forward, then takes the smallest head.
    fn advance_heads(&mut self, target: u64, inclusive: bool) -> Option<u64> {
        while let Some(mut top) = self.heap.peek_mut() {
            let Reverse((r, i)) = *top;
            let behind = match r.cmp(&target) {
                Ordering::Less => true,
                Ordering::Equal => inclusive,
                Ordering::Greater => false,
            };
            if !behind {
                break;
            }
            let moved = match self.lists.get_mut(i) {
                Some(p) if inclusive => p.next(),
                Some(p) => p.seek(target),
                None => None,
            };
            match moved {
                Some(n) => *top = Reverse((n, i)),
                None => {
                    std::collections::binary_heap::PeekMut::pop(top);
                }
            }
        }
        self.cur = self.heap.peek().map(|Reverse((r, _))| *r);
        self.cur
    }
}

impl Postings for Merge<'_> {
    fn next(&mut self) -> Option<u64> {
        if !self.started {
            self.start(None);
            return self.cur;
        }
        match self.cur {
            Some(c) => self.advance_heads(c, true),
            None => None,
        }
    }

    fn seek(&mut self, target: u64) -> Option<u64> {
        if !self.started {
            self.start(Some(target));
            return self.cur;
        }
        match self.cur {
            Some(c) if c >= target => Some(c),
            Some(_) => self.advance_heads(target, false),
            None => None,
        }
    }
}

/// Difference: references of `full` that are not in `drop`.
pub fn without<'a>(
    full: Box<dyn Postings + 'a>,
    drop: Box<dyn Postings + 'a>,
) -> Box<dyn Postings + 'a> {
    Box::new(Without {
        full,
        drop,
        drop_cur: None,
        drop_done: false,
        cur: None,
        done: false,
    })
}

struct Without<'a> {
    full: Box<dyn Postings + 'a>,
    drop: Box<dyn Postings + 'a>,
    drop_cur: Option<u64>,
    drop_done: bool,
    cur: Option<u64>,
    done: bool,
}

impl Without<'_> {
    /// Whether `r` is in the drop list, moving that list's cursor no further than needed.
    fn dropped(&mut self, r: u64) -> bool {
        if self.drop_done {
            return false;
        }
        if self.drop_cur.is_none_or(|d| d < r) {
            self.drop_cur = self.drop.seek(r);
            if self.drop_cur.is_none() {
                self.drop_done = true;
                return false;
            }
        }
        self.drop_cur == Some(r)
    }

    /// Takes `candidate` from `full`, or the first later one not dropped.
    fn settle(&mut self, mut candidate: Option<u64>) -> Option<u64> {
        while let Some(r) = candidate {
            if !self.dropped(r) {
                self.cur = Some(r);
                return self.cur;
            }
            candidate = self.full.next();
        }
        self.done = true;
        self.cur = None;
        None
    }
}

impl Postings for Without<'_> {
    fn next(&mut self) -> Option<u64> {
        if self.done {
            return None;
        }
        let c = self.full.next();
        self.settle(c)
    }

    fn seek(&mut self, target: u64) -> Option<u64> {
        if self.done {
            return None;
        }
        match self.cur {
            Some(c) if c >= target => Some(c),
            _ => {
                let c = self.full.seek(target);
                self.settle(c)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Next,
        Seek(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![2 => Just(Op::Next), 1 => (0u64..600).prop_map(Op::Seek)],
            0..80,
        )
    }

    fn sets(max_lists: usize) -> impl Strategy<Value = Vec<BTreeSet<u64>>> {
        proptest::collection::vec(
            prop_oneof![
                proptest::collection::btree_set(0u64..500, 0..60),
                proptest::collection::btree_set(0u64..500, 0..400),
            ],
            0..max_lists,
        )
    }

    /// Replays `ops` against `p` and against a cursor over the model's sorted elements.
    fn check(p: &mut dyn Postings, model: &BTreeSet<u64>, ops: &[Op]) -> Result<(), TestCaseError> {
        let m: Vec<u64> = model.iter().copied().collect();
        // Index of the model's current element; None before start; m.len() once exhausted.
        let mut cur: Option<usize> = None;
        for &op in ops {
            let got = match op {
                Op::Next => p.next(),
                Op::Seek(t) => p.seek(t),
            };
            let next_idx = match (op, cur) {
                (_, Some(i)) if i >= m.len() => m.len(),
                (Op::Next, None) => 0,
                (Op::Next, Some(i)) => i + 1,
                (Op::Seek(t), Some(i)) if m[i] >= t => i,
                (Op::Seek(t), c) => {
                    let from = c.map_or(0, |i| i + 1);
                    from + m[from..].partition_point(|&x| x < t)
                }
            };
            cur = Some(next_idx);
            prop_assert_eq!(got, m.get(next_idx).copied(), "after {:?}", op);
        }
        // Draining yields the rest.
        let rest = collect(p);
        let from = cur.map_or(0, |i| (i + 1).min(m.len()));
        prop_assert_eq!(rest, &m[from..]);
        Ok(())
    }

    fn boxed<'a>(s: &'a [Vec<u64>]) -> Vec<Box<dyn Postings + 'a>> {
        s.iter()
            .map(|l| Box::new(ListPostings::new(l)) as Box<dyn Postings + 'a>)
            .collect()
    }

    proptest! {
        #[test]
        fn list_vec_and_big_endian_postings_follow_the_model(
            s in proptest::collection::btree_set(0u64..500, 0..300), ops in ops()
        ) {
            let v: Vec<u64> = s.iter().copied().collect();
            check(&mut ListPostings::new(&v), &s, &ops)?;
            check(&mut VecPostings::new(v.clone()), &s, &ops)?;
            let be: Vec<u8> = v.iter().flat_map(|&r| (r as u32).to_be_bytes()).collect();
            check(&mut BigEndianPostings::new(&be), &s, &ops)?;
        }

        #[test]
        fn intersect_follows_the_model(s in sets(5), ops in ops()) {
            let lists: Vec<Vec<u64>> = s.iter().map(|x| x.iter().copied().collect()).collect();
            let model = match s.split_first() {
                None => BTreeSet::new(),
                Some((first, rest)) => first
                    .iter()
                    .copied()
                    .filter(|r| rest.iter().all(|o| o.contains(r)))
                    .collect(),
            };
            check(&mut *intersect(boxed(&lists)), &model, &ops)?;
        }

        #[test]
        fn merge_follows_the_model(s in sets(7), ops in ops()) {
            let lists: Vec<Vec<u64>> = s.iter().map(|x| x.iter().copied().collect()).collect();
            let model: BTreeSet<u64> = s.iter().flatten().copied().collect();
            check(&mut *merge(boxed(&lists)), &model, &ops)?;
        }

        #[test]
        fn without_follows_the_model(
            a in proptest::collection::btree_set(0u64..500, 0..300),
            b in proptest::collection::btree_set(0u64..500, 0..300),
            ops in ops()
        ) {
            let (va, vb): (Vec<u64>, Vec<u64>) =
                (a.iter().copied().collect(), b.iter().copied().collect());
            let model: BTreeSet<u64> = a.difference(&b).copied().collect();
            let mut p = without(Box::new(ListPostings::new(&va)), Box::new(ListPostings::new(&vb)));
            check(&mut *p, &model, &ops)?;
        }

        #[test]
        fn nested_combinators_follow_the_model(s in sets(6), ops in ops()) {
            prop_assume!(s.len() >= 3);
            let lists: Vec<Vec<u64>> = s.iter().map(|x| x.iter().copied().collect()).collect();
            // (l0 ∪ l1) ∩ l2, minus the rest.
            let union: BTreeSet<u64> = s[0].union(&s[1]).copied().collect();
            let mut model: BTreeSet<u64> = union.intersection(&s[2]).copied().collect();
            for d in &s[3..] {
                model = model.difference(d).copied().collect();
            }
            let ls = boxed(&lists);
            let mut it = ls.into_iter();
            let (l0, l1, l2) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            let mut p = intersect(vec![merge(vec![l0, l1]), l2]);
            for d in it {
                p = without(p, d);
            }
            check(&mut *p, &model, &ops)?;
        }
    }

    #[test]
    fn big_endian_postings_read_u32_refs_and_ignore_a_partial_tail() {
        let data = [0, 0, 0, 1, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 9, 9];
        let mut p = BigEndianPostings::new(&data);
        assert_eq!(p.len(), 3);
        assert_eq!(collect(&mut p), vec![1, 256, 0xffff_ffff]);
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(collect(&mut *intersect(vec![])), Vec::<u64>::new());
        assert_eq!(collect(&mut *merge(vec![])), Vec::<u64>::new());
        let mut p = without(Box::new(EmptyPostings), Box::new(VecPostings::new(vec![1])));
        assert_eq!(p.seek(0), None);
        assert_eq!(p.next(), None);
    }
}
