//! Work spread over the cores, in a deterministic order.

use super::*;

/// Hands each merchant of a chunk its events of one table (`put`), its lists from the
/// loader's runs joined in file order; the merchants are split among the cores.
pub(super) fn distribute<T: Send>(
    mut parts: Vec<Events<T>>,
    ms: &mut [&mut Merchant],
    put: fn(&mut Merchant, Vec<T>),
) -> Result<(), ProfileError> {
    let per = per_core(ms.len());
    // Cut every run's lists at the same merchant boundaries as `ms`.
    let mut pieces: Vec<Vec<&mut [Vec<T>]>> = Vec::new();
    for part in parts.iter_mut() {
        let mut rest: &mut [Vec<T>] = part.as_mut_slice();
        for t in 0..ms.len().div_ceil(per) {
            let n = per.min(rest.len());
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(n);
            if pieces.len() <= t {
                pieces.push(Vec::new());
            }
            pieces[t].push(mine);
            rest = tail;
        }
    }
    let work: Vec<_> = ms.chunks_mut(per).zip(pieces).collect();
    parallel(work, |(mine, mut pieces)| {
        for (l, m) in mine.iter_mut().enumerate() {
            let mut events: Vec<T> = Vec::new();
            for piece in pieces.iter_mut() {
                if let Some(v) = piece.get_mut(l) {
                    let v = std::mem::take(v);
                    if events.is_empty() {
                        events = v;
                    } else {
                        events.extend(v);
                    }
                }
            }
            put(m, events);
        }
    })
}

/// `f` on every merchant of `ms`, the merchants split among the cores.
pub(super) fn on_all_cores(
    ms: &mut [&mut Merchant],
    f: fn(&mut Merchant),
) -> Result<(), ProfileError> {
    let per = per_core(ms.len());
    parallel(ms.chunks_mut(per).collect(), |mine| {
        for m in mine.iter_mut() {
            f(m);
        }
    })
}

/// Items per core when `n` items are split among the cores.
pub(super) fn per_core(n: usize) -> usize {
    let threads = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1)
        .max(1);
    n.div_ceil(threads).max(1)
}

/// Runs `f` on each work item, one thread per item.
pub(super) fn parallel<W: Send>(work: Vec<W>, f: impl Fn(W) + Sync) -> Result<(), ProfileError> {
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .into_iter()
            .map(|w| scope.spawn(move || f(w)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| ProfileError::Output("a loader thread panicked".into()))
        })
    })
}
