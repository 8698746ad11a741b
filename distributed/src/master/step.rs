//! Running a compiled step: one `RunGraph` per task at once, a heartbeat watching them,
//! and on the first failure an `AbortStep` to every task of the step.
//!
//! Invariants: a step returns only after every `RunGraph` answered or the abort grace
//! period passed; its rendezvous entries are cleaned up on every task (by the task itself
//! when the step had one partition).

use std::time::Instant;

use futures::future::join_all;
use rill_graph::{Code, Error, Result, Tensor};
use rill_kernels::rendezvous::RendezvousKey;

use super::compile::{DistributedStep, FetchSource};
use super::{
    random_u64, restarted, ClusterSession, ABORT_GRACE, CONTROL_DEADLINE, HEARTBEAT_DEADLINE,
};
use crate::proto::*;
use crate::rendezvous::fetch;
use crate::status::from_status;
use crate::transport::with_deadline;
use crate::wire;

impl ClusterSession {
    pub(super) async fn run_step(
        &self,
        step: &DistributedStep,
        feeds: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let step_id = random_u64();
        let sole = step.parts.len() == 1;
        let mut calls = vec![];
        for (p, part) in step.parts.iter().enumerate() {
            let is_client = step.client_part == Some(p);
            let request = RunGraphRequest {
                session_handle: self.handle.clone(),
                graph_handle: part.graph_handle.clone(),
                step_id,
                feeds: part
                    .feed_from
                    .iter()
                    .map(|&i| wire::to_wire(&feeds[i]))
                    .collect(),
                sends: if is_client {
                    step.sends
                        .iter()
                        .map(|(i, k)| NamedTensor {
                            name: k.clone(),
                            tensor: Some(wire::to_wire(&feeds[*i])),
                        })
                        .collect()
                } else {
                    vec![]
                },
                recv_keys: if is_client {
                    step.recv_keys.clone()
                } else {
                    vec![]
                },
                cleanup_when_done: sole,
                expected_incarnation: self.tasks[part.task].incarnation,
            };
            let mut c = self.tasks[part.task].client.clone();
            let name = self.tasks[part.task].name.to_string();
            calls.push(tokio::spawn(async move {
                c.run_graph(request)
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| from_status(&s, &name))
            }));
        }
        let involved: Vec<usize> = step.parts.iter().map(|p| p.task).collect();
        let outcome = self.wait_for_parts(step_id, calls, &involved).await;
        let fetched = match &outcome {
            Ok(responses) => self.collect_fetches(step, step_id, responses).await,
            Err(e) => Err(e.clone()),
        };
        let streamed = outcome.as_ref().is_ok_and(|r| {
            r.iter().any(|r| {
                r.fetches
                    .iter()
                    .chain(r.recvs.iter().filter_map(|n| n.tensor.as_ref()))
                    .any(|w| !w.stream_key.is_empty())
            })
        });
        if !sole || streamed {
            // Forget the step everywhere (in the background: the caller need not wait).
            for &t in &involved {
                let mut c = self.tasks[t].client.clone();
                tokio::spawn(async move {
                    let _ = c
                        .cleanup_step(with_deadline(
                            CleanupStepRequest { step_id },
                            CONTROL_DEADLINE,
                        ))
                        .await;
                });
            }
        }
        fetched
    }

    /// The step's fetches from the tasks' responses, pulling those too large to inline.
    async fn collect_fetches(
        &self,
        step: &DistributedStep,
        step_id: u64,
        responses: &[RunGraphResponse],
    ) -> Result<Vec<Tensor>> {
        let mut values = Vec::with_capacity(step.fetch_from.len());
        for source in &step.fetch_from {
            let (part, wire) = match source {
                FetchSource::Part { part, index } => (*part, responses[*part].fetches.get(*index)),
                FetchSource::Recv(i) => {
                    let client = step.client_part.expect("recvs go through the client part");
                    let w = responses[client]
                        .recvs
                        .get(*i)
                        .and_then(|n| n.tensor.as_ref());
                    (client, w)
                }
            };
            let wire = wire.ok_or_else(|| Error::internal("a task returned too few values"))?;
            values.push(if wire.stream_key.is_empty() {
                wire::from_wire(wire)?
            } else {
                let task = &self.tasks[step.parts[part].task].name;
                let key = RendezvousKey::parse(&wire.stream_key)?;
                fetch(&self.peers, step_id, &key, task).await?.0
            });
        }
        Ok(values)
    }

    /// Waits for every part's RunGraph while watching the tasks' heartbeats; on the first
    /// failure aborts the step on every involved task.
    async fn wait_for_parts(
        &self,
        step_id: u64,
        calls: Vec<tokio::task::JoinHandle<Result<RunGraphResponse>>>,
        involved: &[usize],
    ) -> Result<Vec<RunGraphResponse>> {
        let n = calls.len();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (i, call) in calls.into_iter().enumerate() {
            let tx = tx.clone();
            tokio::spawn(async move {
                let r = call
                    .await
                    .unwrap_or_else(|e| Err(Error::internal(format!("RunGraph task: {e}"))));
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        let mut responses: Vec<Option<RunGraphResponse>> = (0..n).map(|_| None).collect();
        let mut first_error: Option<Error> = None;
        let mut done = 0;
        // The first heartbeat one interval from now (an immediate first tick would still
        // wait for the timer wheel's next millisecond).
        let period = self.options.heartbeat_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut deadline: Option<Instant> = None;
        while done < n {
            tokio::select! {
                msg = rx.recv() => {
                    let Some((i, r)) = msg else { break };
                    done += 1;
                    match r {
                        Ok(resp) => responses[i] = Some(resp),
                        Err(e) => {
                            if first_error.is_none() {
                                self.abort_everywhere(step_id, &e, involved).await;
                                first_error = Some(e);
                                deadline = Some(Instant::now() + ABORT_GRACE);
                            }
                        }
                    }
                }
                _ = ticker.tick() => {
                    if deadline.is_some_and(|d| Instant::now() > d) {
                        break;
                    }
                    if first_error.is_none() {
                        if let Err(e) = self.check_alive(involved).await {
                            self.abort_everywhere(step_id, &e, involved).await;
                            first_error = Some(e);
                            deadline = Some(Instant::now() + ABORT_GRACE);
                        }
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        responses
            .into_iter()
            .map(|r| r.ok_or_else(|| Error::internal("a RunGraph did not answer")))
            .collect()
    }

    /// Heartbeats every involved task: Unavailable naming one that does not answer,
    /// Aborted naming one that restarted.
    async fn check_alive(&self, involved: &[usize]) -> Result<()> {
        let calls = involved.iter().map(|&t| {
            let mut c = self.tasks[t].client.clone();
            let info = &self.tasks[t];
            async move {
                let status = c
                    .heartbeat(with_deadline(GetStatusRequest {}, HEARTBEAT_DEADLINE))
                    .await
                    .map_err(|s| {
                        Error::new(
                            Code::Unavailable,
                            format!(
                                "task {} stopped answering heartbeats: {}",
                                info.name,
                                s.message()
                            ),
                        )
                    })?
                    .into_inner();
                if status.incarnation != info.incarnation {
                    return Err(restarted(&info.name));
                }
                Ok(())
            }
        });
        join_all(calls).await.into_iter().collect()
    }

    async fn abort_everywhere(&self, step_id: u64, e: &Error, involved: &[usize]) {
        let calls = involved.iter().map(|&t| {
            let mut c = self.tasks[t].client.clone();
            let request = AbortStepRequest {
                step_id,
                code: e.code as i32,
                message: e.message.clone(),
            };
            async move {
                let _ = c
                    .abort_step(with_deadline(request, HEARTBEAT_DEADLINE))
                    .await;
            }
        });
        join_all(calls).await;
    }
}
