//! Data parallelism's communication: a group of ranks joined through
//! libtorch's c10d (a `TCPStore` rendezvous served by rank 0 and a
//! `ProcessGroupGloo` for the collectives, through `dist.cpp`).
//!
//! Gloo reduces CPU tensors in place; CUDA tensors go through a host copy
//! (NCCL is not wired: see docs/distributed.md). A collective that fails
//! (a peer died, or did not arrive within the group's timeout) returns an
//! error naming the ranks that no longer answer on the store.

use std::ffi::{c_char, c_int, c_longlong, c_void, CString};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::fused::check;

extern "C" {
    fn lpo_dist_connect(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_longlong,
        threads: c_int,
        agent_store: c_int,
        prefix: *const c_char,
        out: *mut *mut c_void,
    ) -> *const c_char;
    fn lpo_dist_allreduce(group: *mut c_void, t: *const C_tensor, op: c_int) -> *const c_char;
    fn lpo_dist_store_set(
        group: *mut c_void,
        key: *const c_char,
        value: *const c_char,
    ) -> *const c_char;
    fn lpo_dist_store_check(
        group: *mut c_void,
        key: *const c_char,
        found: *mut c_int,
    ) -> *const c_char;
    fn lpo_dist_free(group: *mut c_void);
}

/// Where and as what this process joins a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// Host of rank 0, which serves the store.
    pub host: String,
    /// The store's port.
    pub port: u16,
    /// This process's rank, `0..world`.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// This process's rank on its node (which GPU it takes).
    pub local_rank: usize,
    /// The store is served by the launcher (torchrun's agent:
    /// `TORCHELASTIC_USE_AGENT_STORE`), not by rank 0; lpo's keys then go
    /// under this prefix.
    pub agent_store: Option<String>,
}

/// How an element-wise reduction combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// The sum.
    Sum,
    /// The maximum.
    Max,
}

/// A joined group: this process's handle on the collectives.
pub struct Group {
    handle: *mut c_void,
    rank: usize,
    world: usize,
}

impl Group {
    /// Joins the group `at` describes: rank 0 serves the store, every rank
    /// waits up to `timeout` for all the others, and every later collective
    /// fails after `timeout` without them. `threads`: Gloo's worker threads.
    pub fn connect(at: &Rendezvous, timeout: Duration, threads: usize) -> Result<Group> {
        let host = CString::new(at.host.as_str())
            .map_err(|_| anyhow!("the rendezvous host {:?} holds a NUL byte", at.host))?;
        let prefix = CString::new(at.agent_store.as_deref().unwrap_or_default())
            .map_err(|_| anyhow!("the store prefix holds a NUL byte"))?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: host and prefix are NUL-terminated; `handle` receives a new group.
        let error = unsafe {
            lpo_dist_connect(
                host.as_ptr(),
                c_int::from(at.port),
                at.rank as c_int,
                at.world as c_int,
                timeout.as_millis().min(i64::MAX as u128) as c_longlong,
                threads.max(1) as c_int,
                c_int::from(at.agent_store.is_some()),
                prefix.as_ptr(),
                &mut handle,
            )
        };
        check(error, "joining the process group").map_err(|e| {
            e.context(format!(
                "rank {} of {} could not join the group at {}:{} within {} s",
                at.rank,
                at.world,
                at.host,
                at.port,
                timeout.as_secs()
            ))
        })?;
        Ok(Group {
            handle,
            rank: at.rank,
            world: at.world,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Replaces `t` by the reduction of every rank's `t` (same shape and
    /// kind on every rank). Gloo reduces on the host: a CUDA tensor is copied
    /// there and back.
    pub fn all_reduce(&self, t: &mut Tensor, op: Reduce) -> Result<()> {
        if t.device() != Device::Cpu {
            let mut host = t.to_device(Device::Cpu);
            self.all_reduce(&mut host, op)?;
            t.copy_(&host);
            return Ok(());
        }
        let op = match op {
            Reduce::Sum => 0,
            Reduce::Max => 1,
        };
        // SAFETY: a CPU tensor this group reduces in place.
        let error = unsafe { lpo_dist_allreduce(self.handle, t.as_ptr(), op) };
        check(error, "all-reduce").map_err(|e| self.failed(e))
    }

    /// Every rank's `value`, in rank order.
    pub fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        let mut slots = vec![0i64; self.world];
        slots[self.rank] = value as i64; // one rank writes each slot: the sum is exact
        let mut t = Tensor::from_slice(&slots);
        self.all_reduce(&mut t, Reduce::Sum)?;
        let values = Vec::<i64>::try_from(&t)?;
        Ok(values.into_iter().map(|v| v as u64).collect())
    }

    /// Every rank's `data` (of any length), in rank order: the lengths are
    /// gathered first, then one buffer where each rank fills its own span
    /// (so the sum is exact).
    pub fn all_gather_i64(&self, data: &[i64]) -> Result<Vec<Vec<i64>>> {
        let lengths = self.all_gather_u64(data.len() as u64)?;
        let total: u64 = lengths.iter().sum();
        let start: u64 = lengths[..self.rank].iter().sum();
        let mut buffer = vec![0i64; total as usize];
        buffer[start as usize..start as usize + data.len()].copy_from_slice(data);
        let mut t = Tensor::from_slice(&buffer);
        self.all_reduce(&mut t, Reduce::Sum)?;
        let all = Vec::<i64>::try_from(&t)?;
        let mut out = Vec::with_capacity(self.world);
        let mut at = 0usize;
        for n in lengths {
            out.push(all[at..at + n as usize].to_vec());
            at += n as usize;
        }
        Ok(out)
    }

    /// Waits until every rank arrives.
    pub fn barrier(&self) -> Result<()> {
        let mut t = Tensor::zeros([1], (Kind::Int64, Device::Cpu));
        self.all_reduce(&mut t, Reduce::Sum)
    }

    /// `error` (a failed collective) with the ranks that no longer answer:
    /// this rank leaves its mark on the store and waits a few seconds for
    /// every other rank's; the dead (or hung) leave none. Without the store,
    /// rank 0, which serves it, is gone.
    fn failed(&self, error: anyhow::Error) -> anyhow::Error {
        match self.unanswered(Duration::from_secs(10)) {
            Ok(gone) if gone.is_empty() => error,
            Ok(gone) => {
                let ranks = gone.iter().map(|r| r.to_string()).collect::<Vec<_>>();
                let (noun, verb) = match gone.len() {
                    1 => ("rank", "does"),
                    _ => ("ranks", "do"),
                };
                error.context(format!(
                    "{noun} {} of {} {verb} not answer (died, or hangs past the group's timeout)",
                    ranks.join(", "),
                    self.world
                ))
            }
            Err(_) => error.context(format!(
                "rank 0 of {} does not answer (died, or hangs): the group's store it serves is gone",
                self.world
            )),
        }
    }

    /// The ranks whose failure mark does not appear within `wait`.
    fn unanswered(&self, wait: Duration) -> Result<Vec<usize>> {
        let key = |rank: usize| CString::new(format!("lpo/failed/{rank}")).expect("no NUL");
        let one = CString::new("1").expect("no NUL");
        // SAFETY: NUL-terminated key and value.
        check(
            unsafe { lpo_dist_store_set(self.handle, key(self.rank).as_ptr(), one.as_ptr()) },
            "store set",
        )?;
        let deadline = Instant::now() + wait;
        loop {
            let mut gone = Vec::new();
            for rank in (0..self.world).filter(|&r| r != self.rank) {
                let mut found: c_int = 0;
                // SAFETY: NUL-terminated key; `found` is written.
                let error =
                    unsafe { lpo_dist_store_check(self.handle, key(rank).as_ptr(), &mut found) };
                check(error, "store check")?;
                if found == 0 {
                    gone.push(rank);
                }
            }
            if gone.is_empty() || Instant::now() >= deadline {
                return Ok(gone);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the handle came from lpo_dist_connect and is freed once.
        unsafe { lpo_dist_free(self.handle) }
    }
}

/// A port on 127.0.0.1 that was free a moment ago (the OS's pick), for a
/// local group's store.
pub fn free_local_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| anyhow!("finding a free port on 127.0.0.1: {e}"))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(port: u16, rank: usize, world: usize) -> Rendezvous {
        Rendezvous {
            host: "127.0.0.1".into(),
            port,
            rank,
            world,
            local_rank: rank,
            agent_store: None,
        }
    }

    #[test]
    fn two_ranks_in_threads_sum_gather_and_take_the_maximum() {
        let port = free_local_port().unwrap();
        let ranks: Vec<_> = (0..2)
            .map(|rank| {
                std::thread::spawn(move || {
                    let g =
                        Group::connect(&local(port, rank, 2), Duration::from_secs(60), 1).unwrap();
                    let mut t = Tensor::from_slice(&[rank as f32 + 1.0, 0.5]);
                    g.all_reduce(&mut t, Reduce::Sum).unwrap();
                    let sum = Vec::<f32>::try_from(&t).unwrap();
                    let mut m = Tensor::from_slice(&[rank as f64 * 2.0 - 1.0]);
                    g.all_reduce(&mut m, Reduce::Max).unwrap();
                    let gathered = g.all_gather_u64(u64::MAX - rank as u64).unwrap();
                    let ragged: Vec<i64> = (0..=rank as i64 * 2).map(|v| v - 7).collect();
                    let spans = g.all_gather_i64(&ragged).unwrap();
                    assert_eq!(spans, vec![vec![-7], vec![-7, -6, -5]]);
                    g.barrier().unwrap();
                    (sum, m.double_value(&[0]), gathered)
                })
            })
            .collect();
        for handle in ranks {
            let (sum, max, gathered) = handle.join().unwrap();
            assert_eq!(sum, vec![3.0, 1.0]);
            assert_eq!(max, 1.0);
            assert_eq!(gathered, vec![u64::MAX, u64::MAX - 1]);
        }
    }

    #[test]
    fn a_rank_alone_gives_up_after_the_timeout_naming_the_group() {
        let port = free_local_port().unwrap();
        let started = Instant::now();
        let Err(e) = Group::connect(&local(port, 0, 2), Duration::from_secs(2), 1) else {
            panic!("joined a group of 2 alone");
        };
        let message = format!("{e:#}");
        assert!(message.contains("rank 0 of 2 could not join"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(30), "{message}");
    }
}
