//! Packing messages into `SendMessageBatch` requests.
//!
//! Fewer requests means fewer API calls per invocation, but a request over 10 entries or over
//! the batch byte limit is refused whole. Packing is greedy and keeps the input order, so the
//! backlog is re-sent in the order it was received.

use std::ops::Range;

use crate::size::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES};

/// [`pack_within`] SQS's own per-message limit, [`SQS_MAX_MESSAGE_BYTES`] (any queue).
pub fn pack(sizes: &[usize]) -> Vec<Range<usize>> {
    pack_within(sizes, SQS_MAX_MESSAGE_BYTES)
}

/// Splits messages of the given sizes into consecutive, in-order batches.
///
/// Each batch has 1 to [`MAX_BATCH_ENTRIES`] messages totalling at most [`MAX_BATCH_BYTES`],
/// except that a message too large to share goes alone. That includes a message over
/// `max_message_bytes` (the queue's limit, see [`crate::size::message_limit`]): it is still
/// returned, alone, so the sender tries it and reports SQS's refusal rather than the message
/// vanishing, and the refusal cannot take other messages with it.
pub fn pack_within(sizes: &[usize], max_message_bytes: usize) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut total: usize = 0;
    for (i, &size) in sizes.iter().enumerate() {
        // Counted as filling a batch on its own, so it shares with nothing.
        let size = if size > max_message_bytes {
            usize::MAX
        } else {
            size
        };
        let full = i - start == MAX_BATCH_ENTRIES || total.saturating_add(size) > MAX_BATCH_BYTES;
        if i > start && full {
            batches.push(start..i);
            start = i;
            total = 0;
        }
        total = total.saturating_add(size);
    }
    if start < sizes.len() {
        batches.push(start..sizes.len());
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::SQS_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES;
    use proptest::prelude::*;

    #[test]
    fn nothing_packs_into_nothing() {
        assert!(pack(&[]).is_empty());
    }

    #[test]
    fn small_messages_go_ten_at_a_time() {
        assert_eq!(pack(&[1; 25]), vec![0..10, 10..20, 20..25]);
    }

    #[test]
    fn bytes_close_a_batch_before_ten() {
        let third = MAX_BATCH_BYTES / 3;
        assert_eq!(
            pack(&[third, third, third, 1, 5]),
            vec![0..4, 4..5],
            "exactly full"
        );
        assert_eq!(pack(&[third, third, third, 2, 5]), vec![0..3, 3..5]);
        assert_eq!(pack(&[third, third, third + 2]), vec![0..2, 2..3]);
    }

    #[test]
    fn a_batch_may_be_exactly_full() {
        let half = MAX_BATCH_BYTES / 2;
        assert_eq!(pack(&[half, half, 1]), vec![0..2, 2..3]);
    }

    #[test]
    fn a_full_size_message_goes_alone() {
        assert_eq!(pack(&[10, MAX_MESSAGE_BYTES, 10]), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn an_oversized_message_is_kept_alone() {
        assert_eq!(
            pack(&[1, MAX_MESSAGE_BYTES + 1, 0, usize::MAX, 1]),
            vec![0..1, 1..2, 2..3, 3..4, 4..5]
        );
    }

    #[test]
    fn a_message_over_the_queue_limit_goes_alone_even_if_the_batch_has_room() {
        let limit = 262_144;
        assert_eq!(
            pack_within(&[10, limit + 1, 10, limit, 10], limit),
            vec![0..1, 1..2, 2..5]
        );
        assert_eq!(pack_within(&[limit + 1; 3], limit), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn ten_messages_fill_a_batch_up_to_one_mib_exactly() {
        let tenth = MAX_BATCH_BYTES / 10;
        let mut sizes = vec![tenth; 10];
        sizes[9] += MAX_BATCH_BYTES % 10;
        assert_eq!(sizes.iter().sum::<usize>(), MAX_BATCH_BYTES);
        assert_eq!(pack(&sizes), vec![0..10]);
        sizes[9] += 1;
        assert_eq!(pack(&sizes), vec![0..9, 9..10]);
    }

    fn sizes() -> impl Strategy<Value = Vec<usize>> {
        let size = prop_oneof![
            8 => 0..=MAX_BATCH_BYTES / 10,
            3 => 0..=MAX_BATCH_BYTES,
            1 => MAX_BATCH_BYTES..=MAX_BATCH_BYTES * 4,
        ];
        proptest::collection::vec(size, 0..60)
    }

    proptest! {
        #[test]
        fn batches_are_contiguous_in_order_and_cover_everything(sizes in sizes()) {
            let batches = pack(&sizes);
            let mut next = 0;
            for b in &batches {
                prop_assert_eq!(b.start, next, "gap or overlap at {:?}", b);
                next = b.end;
            }
            prop_assert_eq!(next, sizes.len());
        }

        #[test]
        fn batches_respect_the_limits(sizes in sizes()) {
            for b in pack(&sizes) {
                prop_assert!((1..=MAX_BATCH_ENTRIES).contains(&b.len()), "{:?}", b);
                let total: usize = sizes[b.clone()].iter().sum();
                prop_assert!(
                    total <= MAX_BATCH_BYTES || b.len() == 1,
                    "batch {:?} holds {} bytes", b, total
                );
            }
        }

        /// Greedy: a batch only ends when the next message would not fit in it.
        #[test]
        fn no_batch_closes_early(sizes in sizes()) {
            let batches = pack(&sizes);
            for pair in batches.windows(2) {
                let (b, next) = (&pair[0], pair[1].start);
                let total: usize = sizes[b.clone()].iter().sum();
                prop_assert!(
                    b.len() == MAX_BATCH_ENTRIES || total.saturating_add(sizes[next]) > MAX_BATCH_BYTES,
                    "batch {:?} could have taken message {}", b, next
                );
            }
        }

        /// Against any queue limit, a message over it is alone in its batch.
        #[test]
        fn messages_over_the_queue_limit_are_alone(
            sizes in sizes(),
            limit in 1_024..=MAX_MESSAGE_BYTES,
        ) {
            for b in pack_within(&sizes, limit) {
                let over = sizes[b.clone()].iter().filter(|&&s| s > limit).count();
                prop_assert!(over == 0 || b.len() == 1, "batch {:?} shares an oversized message", b);
            }
        }

        #[test]
        fn small_messages_need_exactly_ceil_n_over_ten_batches(
            sizes in proptest::collection::vec(0..=MAX_BATCH_BYTES / 10, 0..100)
        ) {
            prop_assert_eq!(pack(&sizes).len(), sizes.len().div_ceil(MAX_BATCH_ENTRIES));
        }
    }
}
