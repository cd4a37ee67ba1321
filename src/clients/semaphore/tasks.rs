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
}
