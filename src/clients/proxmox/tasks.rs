//! Proxmox tasks (UPIDs): status, the log tail, waiting, and the error of a failed task.

use super::*;

impl Client {
    pub async fn task_status(&self, upid: &str) -> RResult<TaskStatus> {
        let u = Upid::parse(upid).map_err(RalfError::invalid)?;
        let v = self
            .get(
                &format!("/nodes/{}/tasks/{}/status", u.node, enc(upid)),
                &[],
            )
            .await?;
        Ok(TaskStatus {
            upid: upid.to_string(),
            status: v["status"].as_str().unwrap_or("unknown").to_string(),
            exitstatus: v["exitstatus"].as_str().map(String::from),
            raw: v,
        })
    }

    /// The last `n` lines of a task's log. Reads `total` first and then only the tail, with an
    /// explicit `limit`: `limit=0` ("the whole log") returns no line at all before PVE 7.3.
    pub async fn task_log_tail(&self, upid: &str, n: usize) -> RResult<Vec<String>> {
        let u = Upid::parse(upid).map_err(RalfError::invalid)?;
        let path = format!("/nodes/{}/tasks/{}/log", u.node, enc(upid));
        if n == 0 {
            return Ok(Vec::new());
        }
        let head = self
            .request(
                Method::GET,
                &path,
                &[("start", "0".into()), ("limit", "1".into())],
            )
            .await?;
        let total = num(&head["total"]).unwrap_or(0).max(0) as usize;
        let start = total.saturating_sub(n);
        let v = self
            .get(
                &path,
                &[("start", start.to_string()), ("limit", n.to_string())],
            )
            .await?;
        let lines: Vec<String> = as_array(v)
            .iter()
            .filter_map(|l| l["t"].as_str().map(String::from))
            .collect();
        let skip = lines.len().saturating_sub(n);
        Ok(lines[skip..].to_vec())
    }

    /// Poll the task until it stops (or `deadline` passes: `timeout`). A failed task is an error
    /// carrying its exit status and log tail; `Ok` only for `OK` / `WARNINGS: n`.
    pub async fn wait_task(&self, upid: &str, deadline: Option<Duration>) -> RResult<TaskStatus> {
        let st = self.wait_stopped(upid, deadline).await?;
        if st.ok() {
            return Ok(st);
        }
        Err(self.task_failure(&st).await)
    }

    /// Poll until stopped; no judgement of the exit status.
    pub async fn wait_stopped(
        &self,
        upid: &str,
        deadline: Option<Duration>,
    ) -> RResult<TaskStatus> {
        let start = Instant::now();
        let mut interval = self.poll.min(Duration::from_millis(100));
        loop {
            let st = match self.task_status(upid).await {
                Ok(st) => st,
                // The task runs on regardless: ride out transient trouble until the deadline.
                Err(e)
                    if e.kind == ErrorKind::Unavailable
                        && deadline.is_none_or(|d| start.elapsed() < d) =>
                {
                    tracing::warn!("proxmox: polling task {upid}: {e}; retrying");
                    tokio::time::sleep(self.poll).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !st.running() {
                return Ok(st);
            }
            if let Some(d) = deadline {
                if start.elapsed() >= d {
                    return Err(RalfError::timeout(format!(
                        "proxmox: task {upid} still running after {} (it keeps running on the server)",
                        crate::text::human_duration(d)
                    ))
                    .with("upid", upid));
                }
                let left = d.saturating_sub(start.elapsed());
                tokio::time::sleep(interval.min(left).max(Duration::from_millis(5))).await;
            } else {
                tokio::time::sleep(interval).await;
            }
            interval = (interval * 2).min(self.poll);
        }
    }

    /// The error for a task that stopped with a failure.
    pub async fn task_failure(&self, st: &TaskStatus) -> RalfError {
        let exit = st
            .exitstatus
            .clone()
            .unwrap_or_else(|| "unexpected status".into());
        let tail = self.task_log_tail(&st.upid, 20).await.unwrap_or_default();
        let (kind, details) = task_error(&exit);
        let mut msg = format!("proxmox: task {} failed: {exit}", st.upid);
        if let Some(hint) = task_hint(&exit) {
            msg.push_str(&format!(" ({hint})"));
        }
        if !tail.is_empty() {
            msg.push_str("\n  log tail:\n");
            for l in &tail {
                msg.push_str("    ");
                msg.push_str(l);
                msg.push('\n');
            }
            msg.pop();
        }
        let e = RalfError::new(kind, msg)
            .with("upid", &st.upid)
            .with("exitstatus", &exit)
            .with("log_tail", &tail);
        details.into_iter().fold(e, |e, (k, v)| e.with(k, v))
    }
}
