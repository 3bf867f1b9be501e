//! A batch prepared on scoped threads.

use crate::error::{Error, Result};

/// Applies `prepare` to every item on up to `threads` scoped threads (contiguous chunks),
/// keeping order: how the classifier prepares a batch and training decodes its data set. A
/// panic in `prepare` (a decoder bug) fails that chunk's items, never the caller.
pub fn prepare_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    prepare: impl Fn(&T) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let workers = threads.min(items.len());
    if workers <= 1 {
        return items.iter().map(&prepare).collect();
    }
    let chunk = items.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let handle = s.spawn(|| part.iter().map(&prepare).collect::<Vec<_>>());
                (part.len(), handle)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(len, h)| {
                h.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| Err(Error::Decode("the image decoder failed internally".into())))
                        .collect()
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_preparation_keeps_order_and_contains_a_panicking_item() {
        let items: Vec<u32> = (0..37).collect();
        for threads in [1, 2, 5, 64] {
            let out = prepare_parallel(&items, threads, |&i| Ok(i * 2));
            let got: Vec<u32> = out.into_iter().map(|r| r.unwrap()).collect();
            assert_eq!(got, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        }
        // A panic fails its own chunk (here 10 items of 4 chunks), never the caller.
        let out = prepare_parallel(&items, 4, |&i| {
            if i == 15 {
                panic!("decoder bug");
            }
            Ok(i)
        });
        let failed: Vec<usize> = (0..out.len()).filter(|&k| out[k].is_err()).collect();
        assert_eq!(failed, (10..20).collect::<Vec<_>>());
        assert!(matches!(out[15], Err(Error::Decode(_))));
    }
}
