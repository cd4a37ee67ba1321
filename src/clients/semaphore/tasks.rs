//! Reading tasks: one task, recent tasks, a template's tasks, output.

use super::*;

impl Client {
    /// A task by id. Semaphore answers 400 with an empty body for an unknown task id: reported as not_found.
    pub async fn task(&self, id: i64) -> RResult<Task> {
        let path = format!("{}/tasks/{id}", self.p());
        match self.get_json(&path, &format!("task {id}")).await {
            Ok(v) => Task::from_value(v),
            Err(e)
                if e.kind == ErrorKind::Invalid && e.details.get("status") == Some(&json!(400)) =>
            {
                Err(RalfError::not_found(format!(
                    "semaphore: task {id} not found in project {}",
                    self.project_id
                ))
                .with("task_id", id))
            }
            Err(e) => Err(e),
        }
    }

    /// Newest tasks of the project (newest first), at most `limit` (1..=200).
    pub async fn recent_tasks(&self, limit: u32) -> RResult<Vec<Task>> {
        let v = self
            .get_json(
                &format!("{}/tasks/last?limit={}", self.p(), limit.clamp(1, 200)),
                "tasks",
            )
            .await?;
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(Task::from_value)
            .collect()
    }

    /// Tasks of one template, newest first.
    pub async fn template_tasks(&self, template_id: i64) -> RResult<Vec<Task>> {
        let v = self
            .get_json(
                &format!("{}/templates/{template_id}/tasks", self.p()),
                &format!("template {template_id}"),
            )
            .await?;
        let mut tasks: Vec<Task> = v
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(Task::from_value)
            .collect::<RResult<_>>()?;
        tasks.sort_by_key(|t| std::cmp::Reverse(t.id));
        Ok(tasks)
    }

    /// Tasks of a template that are not terminal yet (newest first).
    pub async fn active(&self, template_id: i64) -> RResult<Vec<Task>> {
        Ok(self
            .template_tasks(template_id)
            .await?
            .into_iter()
            .filter(|t| !t.is_terminal())
            .collect())
    }

    /// A task's output (oldest first), at most `semaphore.max_output` bytes of it: older lines are
    /// dropped while the answer is parsed (a 300,000-line task used to take 576 MB), and a first
    /// line says how many.
    pub async fn output(&self, task_id: i64) -> RResult<Vec<OutputLine>> {
        let (mut lines, total) = self.output_tail(task_id).await?;
        let dropped = total - lines.len();
        if dropped > 0 {
            lines.insert(
                0,
                OutputLine {
                    time: String::new(),
                    output: format!(
                        "[ralf-sh: {dropped} earlier lines not kept (semaphore.max_output = {} bytes)]",
                        self.max_output
                    ),
                },
            );
        }
        Ok(lines)
    }

    /// The kept tail of a task's output and the total number of lines.
    async fn output_tail(&self, task_id: i64) -> RResult<(Vec<OutputLine>, usize)> {
        let path = format!("{}/tasks/{task_id}/output", self.p());
        let max = self.max_output;
        let r = self
            .get_parsed(&path, &format!("task {task_id}"), |t| {
                let mut de = serde_json::Deserializer::from_str(t);
                serde::de::DeserializeSeed::deserialize(TailSeed { max_bytes: max }, &mut de)
            })
            .await;
        match r {
            Ok((lines, total)) => Ok((lines.into(), total)),
            Err(e) if e.details.get("status") == Some(&json!(400)) => Err(RalfError::not_found(
                format!("semaphore: task {task_id} not found"),
            )),
            Err(e) => Err(e),
        }
    }

    /// Output lines after the first `seen` ones; advances `seen`.
    pub async fn new_output(&self, task_id: i64, seen: &mut usize) -> RResult<Vec<OutputLine>> {
        let (lines, total) = self.output_tail(task_id).await?;
        let first_kept = total - lines.len();
        let skip = (*seen).max(first_kept) - first_kept;
        *seen = total;
        Ok(lines.into_iter().skip(skip).collect())
    }
}

/// One line of `/output` as the server sends it (other fields ignored).
#[derive(serde::Deserialize)]
struct RawLine {
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    output: Option<String>,
}

/// Parses the `/output` array keeping only the newest lines within `max_bytes`.
struct TailSeed {
    max_bytes: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for TailSeed {
    type Value = (std::collections::VecDeque<OutputLine>, usize);

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TailSeed {
    type Value = (std::collections::VecDeque<OutputLine>, usize);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of output lines")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = std::collections::VecDeque::new();
        let (mut bytes, mut total) = (0usize, 0usize);
        while let Some(l) = seq.next_element::<RawLine>()? {
            let line = OutputLine {
                time: l.time.unwrap_or_default(),
                output: l.output.unwrap_or_default(),
            };
            bytes += line.output.len() + line.time.len();
            total += 1;
            kept.push_back(line);
            while bytes > self.max_bytes && kept.len() > 1 {
                if let Some(old) = kept.pop_front() {
                    bytes -= old.output.len() + old.time.len();
                }
            }
        }
        Ok((kept, total))
    }
}

#[cfg(test)]
mod tail_tests {
    use super::*;

    #[test]
    fn only_the_newest_lines_within_the_cap_are_kept_and_counted() {
        let body: Vec<serde_json::Value> = (0..1000)
            .map(|i| json!({"task_id": 1, "time": "t", "output": format!("line {i:04}"), "stage_id": null}))
            .collect();
        let text = serde_json::to_string(&body).unwrap();
        let mut de = serde_json::Deserializer::from_str(&text);
        let (kept, total) =
            serde::de::DeserializeSeed::deserialize(TailSeed { max_bytes: 100 }, &mut de).unwrap();
        assert_eq!(total, 1000);
        assert_eq!(kept.len(), 10, "10 lines of 10 bytes");
        assert_eq!(kept.back().unwrap().output, "line 0999");
        assert_eq!(kept.front().unwrap().output, "line 0990");
    }
}
