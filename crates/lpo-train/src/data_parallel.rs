//! One run over several ranks (data parallelism): which micro-batches of a
//! step each rank computes, the gradients' all-reduce, and the checks that
//! every rank runs the same thing.
//!
//! A step's `train.batch_size` lists are split into `train.grad_accum`
//! micro-batches exactly as in one process; with N ranks (N divides
//! `grad_accum`) rank r computes micro-batches `r·A/N .. (r+1)·A/N`. Their
//! gradients (each already weighted by its share of the step, as in
//! gradient accumulation) are summed across ranks, so every rank holds the
//! gradient one process would have accumulated, up to the order of float
//! sums, and takes the same optimizer step. The step's numbers travel in
//! per-micro-batch slots that only their owner fills, so the reduced
//! numbers equal one process's exactly.

use std::ops::Range;

use anyhow::{bail, Context, Result};
use lpo_torch::dist::{Group, Reduce};
use tch::{Kind, Tensor};

/// Elements per all-reduce bucket (16 MiB of f32).
const BUCKET: i64 = 1 << 22;

/// The micro-batches of a step's `micro` that `group`'s rank computes (all
/// of them without a group).
pub fn my_micro_batches(group: Option<&Group>, micro: usize) -> Range<usize> {
    match group {
        None => 0..micro,
        Some(g) => {
            let per = micro / g.world();
            g.rank() * per..(g.rank() + 1) * per
        }
    }
}

/// Why `grad_accum` micro-batches cannot be shared by `world` ranks, if so.
pub fn sharing_problem(grad_accum: u32, world: usize) -> Option<String> {
    let micro = grad_accum.max(1) as usize;
    (!micro.is_multiple_of(world)).then(|| {
        format!(
            "train.grad_accum = {micro} cannot be shared by {world} ranks: each step's \
             batch is split into grad_accum micro-batches and every rank computes the \
             same number of them, so grad_accum must be a multiple of the number of \
             ranks (e.g. train.grad_accum = {world})"
        )
    })
}

/// Sums every rank's gradients of `params` (each rank's are the gradients
/// of its micro-batches, already weighted), in buckets of [`BUCKET`]
/// elements. A parameter needs a gradient on every rank or none.
pub fn all_reduce_grads(group: &Group, params: &[Tensor]) -> Result<()> {
    let grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
    let defined: Vec<i64> = grads.iter().map(|g| i64::from(g.defined())).collect();
    // How many ranks have each gradient: every rank sees the same counts,
    // so all of them stop together when one differs.
    let mut ranks = Tensor::from_slice(&defined);
    group.all_reduce(&mut ranks, Reduce::Sum)?;
    let world = group.world() as i64;
    if let Some(i) = Vec::<i64>::try_from(&ranks)?
        .iter()
        .position(|&n| n != 0 && n != world)
    {
        bail!("parameter {i} has a gradient on some ranks and none on others");
    }
    let grads: Vec<Tensor> = grads.into_iter().filter(Tensor::defined).collect();
    tch::no_grad(|| {
        let mut start = 0;
        while start < grads.len() {
            let mut end = start + 1;
            let mut numel = grads[start].numel() as i64;
            while end < grads.len() && numel + grads[end].numel() as i64 <= BUCKET {
                numel += grads[end].numel() as i64;
                end += 1;
            }
            reduce_bucket(group, &grads[start..end])?;
            start = end;
        }
        Ok(())
    })
}

/// Sums one bucket of gradients across ranks, in f32 (bf16 gradients are
/// widened for the sum and narrowed back).
fn reduce_bucket(group: &Group, grads: &[Tensor]) -> Result<()> {
    let flat: Vec<Tensor> = grads
        .iter()
        .map(|g| g.reshape([-1]).to_kind(Kind::Float))
        .collect();
    let mut flat = Tensor::cat(&flat, 0);
    group.all_reduce(&mut flat, Reduce::Sum)?;
    let mut offset = 0;
    for g in grads {
        let n = g.numel() as i64;
        let mut g = g.shallow_clone();
        g.copy_(&flat.narrow(0, offset, n).view_as(&g));
        offset += n;
    }
    Ok(())
}

/// Whether `group`'s rank computes chunk `chunk` of a shared loop (chunks
/// go round the ranks); every chunk without a group.
pub fn owns(group: Option<&Group>, chunk: usize) -> bool {
    group.is_none_or(|g| chunk % g.world() == g.rank())
}

/// The rows of `count` chunks in chunk order, each computed by the rank
/// that [`owns`] it: `mine` holds this rank's chunks (index, rows).
pub fn gather_chunks(
    group: Option<&Group>,
    mine: Vec<(usize, Vec<Vec<i64>>)>,
    count: usize,
) -> Result<Vec<Vec<i64>>> {
    let Some(group) = group else {
        return Ok(mine.into_iter().flat_map(|(_, rows)| rows).collect());
    };
    // Encoded as [chunk, rows, each row's length, the rows' values].
    let mut encoded = Vec::new();
    for (chunk, rows) in &mine {
        encoded.push(*chunk as i64);
        encoded.push(rows.len() as i64);
        encoded.extend(rows.iter().map(|r| r.len() as i64));
        encoded.extend(rows.iter().flatten());
    }
    let mut chunks: Vec<Option<Vec<Vec<i64>>>> = vec![None; count];
    for (rank, data) in group.all_gather_i64(&encoded)?.into_iter().enumerate() {
        let mut rest: &[i64] = &data;
        let mut next = |n: usize| -> Result<Vec<i64>> {
            if rest.len() < n {
                bail!("rank {rank} sent a truncated share");
            }
            let (span, tail) = rest.split_at(n);
            rest = tail;
            Ok(span.to_vec())
        };
        let mut left = data.len();
        while left > 0 {
            let head = next(2)?;
            let (chunk, rows) = (head[0] as usize, head[1] as usize);
            let lengths: Vec<usize> = next(rows)?.iter().map(|&n| n as usize).collect();
            let mut out = Vec::with_capacity(rows);
            for &n in &lengths {
                out.push(next(n)?);
            }
            left -= 2 + rows + lengths.iter().sum::<usize>();
            let slot = chunks
                .get_mut(chunk)
                .with_context(|| format!("rank {rank} sent chunk {chunk} of {count}"))?;
            *slot = Some(out);
        }
    }
    let mut rows = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        rows.extend(chunk.with_context(|| format!("no rank sent chunk {i} of {count}"))?);
    }
    Ok(rows)
}

/// Fails unless every rank of `group` holds the same `value` (a hash of
/// what it runs, named `what`), naming the ranks that differ from rank 0.
pub fn agree(group: &Group, what: &str, value: u64) -> Result<()> {
    let values = group.all_gather_u64(value)?;
    let differ: Vec<String> = (0..values.len())
        .filter(|&r| values[r] != values[0])
        .map(|r| r.to_string())
        .collect();
    if !differ.is_empty() {
        bail!(
            "rank(s) {} of {} run a different {what} from rank 0: every rank must be \
             started with the same recipe, run and options",
            differ.join(", "),
            values.len()
        );
    }
    Ok(())
}

/// A stable 64-bit hash of `text`, equal in every process: the project's
/// content id ([`lpo_results::content_id`], 8 bytes of SHA-256) as a number.
pub fn fingerprint(text: &str) -> u64 {
    let id = lpo_results::content_id("rank-agreement", &text);
    u64::from_str_radix(&id, 16).expect("a content id is 16 hex digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_the_micro_batches_in_order_without_overlap() {
        assert_eq!(my_micro_batches(None, 4), 0..4);
        assert!(sharing_problem(3, 2)
            .unwrap()
            .contains("multiple of the number of ranks"));
        assert!(sharing_problem(1, 2).is_some());
        assert_eq!(sharing_problem(4, 2), None);
        assert_eq!(sharing_problem(2, 1), None);
    }

    #[test]
    fn fingerprints_are_the_content_id_of_the_text() {
        let id = lpo_results::content_id("rank-agreement", &"foobar");
        assert_eq!(format!("{:016x}", fingerprint("foobar")), id);
        assert_ne!(fingerprint("a"), fingerprint("b"));
    }
}
