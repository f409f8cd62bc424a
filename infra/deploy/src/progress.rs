//! Progress of a CloudFormation operation: each resource's status as events arrive.
//!
//! On a terminal the view is live (one line per resource, redrawn in place, with the elapsed time); in CI
//! (or when output is not a terminal) every event is one plain line. [`Progress`] is the pure state both
//! views are drawn from.

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::StackEvent;

use crate::aws::err;
use crate::{Clients, Error};

/// Lines of resources in the live view.
const FRAME_ROWS: usize = 15;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Redrawn in place on a terminal (stderr).
    Live,
    /// One line per event on stderr.
    Plain,
    /// Nothing (library use, tests).
    Quiet,
}

impl Output {
    /// Live on a terminal unless `CI` is set; plain lines otherwise.
    pub fn detect() -> Output {
        if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            Output::Live
        } else {
            Output::Plain
        }
    }

    pub(crate) fn line(self, text: &str) {
        if self != Output::Quiet {
            eprintln!("{text}");
        }
    }
}

/// One event, reduced to what progress shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
}

impl Event {
    pub fn from_sdk(e: &StackEvent) -> Event {
        Event {
            id: e.event_id().unwrap_or_default().to_owned(),
            logical_id: e.logical_resource_id().unwrap_or_default().to_owned(),
            resource_type: e.resource_type().unwrap_or_default().to_owned(),
            status: e
                .resource_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            reason: e
                .resource_status_reason()
                .map(str::to_owned)
                .filter(|r| !r.is_empty()),
        }
    }

    /// A failure worth reporting: `*_FAILED` with a reason that is not the echo of another failure.
    pub fn is_root_failure(&self) -> bool {
        self.status.ends_with("_FAILED")
            && !self.reason.as_deref().is_some_and(|r| {
                r.contains("Resource creation cancelled")
                    || r.contains("Resource update cancelled")
                    || r.contains("The following resource(s) failed")
            })
    }
}

/// The state of an operation as far as the events tell.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    seen: HashSet<String>,
    /// logical id → (type, latest status); sorted by id for a stable view.
    resources: BTreeMap<String, (String, String)>,
    /// New events, oldest first.
    events: Vec<Event>,
    drawn_lines: usize,
}

impl Progress {
    /// Starts tracking; events already in `history` (from before the operation) are not shown.
    pub fn new(history: impl IntoIterator<Item = String>) -> Progress {
        Progress {
            started: Instant::now(),
            seen: history.into_iter().collect(),
            resources: BTreeMap::new(),
            events: Vec::new(),
            drawn_lines: 0,
        }
    }

    /// Takes a batch of events (any order, possibly repeated); returns the new ones, oldest first.
    pub fn apply(&mut self, newest_first: Vec<Event>) -> Vec<Event> {
        let mut fresh: Vec<Event> = newest_first
            .into_iter()
            .filter(|e| self.seen.insert(e.id.clone()))
            .collect();
        fresh.reverse();
        for e in &fresh {
            self.resources.insert(
                e.logical_id.clone(),
                (e.resource_type.clone(), e.status.clone()),
            );
        }
        self.events.extend(fresh.iter().cloned());
        fresh
    }

    pub fn has_seen(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// The first failure among the new events, oldest first.
    pub fn first_failure(&self) -> Option<&Event> {
        self.events.iter().find(|e| e.is_root_failure())
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A plain line for one event.
    pub fn plain_line(&self, e: &Event) -> String {
        let secs = self.elapsed().as_secs_f32();
        let mut line = format!(
            "{secs:>6.1}s  {:<28} {:<40} {}",
            e.status, e.logical_id, e.resource_type
        );
        if let Some(reason) = &e.reason {
            line += &format!("  — {reason}");
        }
        line
    }

    /// The live view: one line per resource and a footer with the elapsed time.
    pub fn frame(&self, stack: &str) -> String {
        // Unfinished resources first (what is happening), then the most recently finished, at most
        // FRAME_ROWS lines so the view fits a terminal and can be redrawn in place.
        let mut rows: Vec<&Event> = Vec::new();
        let mut listed = HashSet::new();
        let latest: Vec<&Event> = self
            .events
            .iter()
            .rev()
            .filter(|e| listed.insert(&e.logical_id))
            .collect();
        rows.extend(latest.iter().filter(|e| !e.status.ends_with("_COMPLETE")));
        rows.extend(latest.iter().filter(|e| e.status.ends_with("_COMPLETE")));
        rows.truncate(FRAME_ROWS);
        let mut out = String::new();
        for e in rows {
            out += &format!(
                "  {:<28} {:<40} {}\n",
                e.status, e.logical_id, e.resource_type
            );
        }
        let done = self
            .resources
            .values()
            .filter(|(_, s)| s.ends_with("_COMPLETE"))
            .count();
        out += &format!(
            "{stack}: {done}/{} resources done, {:.0}s elapsed\n",
            self.resources.len(),
            self.elapsed().as_secs_f32()
        );
        out
    }

    pub(crate) fn show(&mut self, output: Output, stack: &str, fresh: &[Event]) {
        match output {
            Output::Quiet => {}
            Output::Plain => {
                for e in fresh {
                    eprintln!("{}", self.plain_line(e));
                }
            }
            Output::Live => {
                let frame = self.frame(stack);
                let mut err = std::io::stderr().lock();
                // Move up over the previous frame and clear it, then draw the new one.
                if self.drawn_lines > 0 {
                    let _ = write!(err, "\x1b[{}A\x1b[J", self.drawn_lines);
                }
                let _ = write!(err, "{frame}");
                let _ = err.flush();
                self.drawn_lines = frame.lines().count();
            }
        }
    }
}

/// The newest events of a stack, newest first, up to the first already-seen one (at most a few pages).
pub(crate) async fn recent_events(
    clients: &Clients,
    stack: &str,
    seen: &dyn Fn(&str) -> bool,
) -> Result<Vec<Event>, Error> {
    let mut out = Vec::new();
    let mut token = None;
    for _page in 0..10 {
        let resp = clients
            .cfn
            .describe_stack_events()
            .stack_name(stack)
            .set_next_token(token)
            .send()
            .await
            .map_err(err("DescribeStackEvents"))?;
        let mut reached_seen = false;
        for e in resp.stack_events() {
            let e = Event::from_sdk(e);
            if seen(&e.id) {
                reached_seen = true;
                break;
            }
            out.push(e);
        }
        token = resp.next_token().map(str::to_owned);
        if reached_seen || token.is_none() {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, logical: &str, status: &str, reason: Option<&str>) -> Event {
        Event {
            id: id.to_owned(),
            logical_id: logical.to_owned(),
            resource_type: "AWS::SQS::Queue".to_owned(),
            status: status.to_owned(),
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn only_new_events_oldest_first() {
        let mut p = Progress::new(["old".to_owned()]);
        let fresh = p.apply(vec![
            ev("2", "A", "CREATE_COMPLETE", None),
            ev("1", "A", "CREATE_IN_PROGRESS", None),
            ev("old", "X", "CREATE_COMPLETE", None),
        ]);
        assert_eq!(
            fresh.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert!(
            p.apply(vec![ev("2", "A", "CREATE_COMPLETE", None)])
                .is_empty(),
            "repeated events are not new"
        );
        let frame = p.frame("s");
        assert!(
            frame.contains("CREATE_COMPLETE") && frame.contains("s: 1/1 resources done"),
            "{frame}"
        );
        assert!(!frame.contains('X'), "{frame}");
    }

    /// A recorded failed update (as AWS reports it): the root cause, then the cancellations it caused.
    #[test]
    fn first_failure_is_the_root_cause() {
        let mut p = Progress::new([]);
        p.apply(vec![
            ev("7", "stack", "UPDATE_ROLLBACK_COMPLETE", None),
            ev(
                "6",
                "stack",
                "UPDATE_ROLLBACK_IN_PROGRESS",
                Some("The following resource(s) failed to update: [Table]. "),
            ),
            ev(
                "5",
                "Queue",
                "UPDATE_FAILED",
                Some("Resource update cancelled"),
            ),
            ev(
                "4",
                "Table",
                "UPDATE_FAILED",
                Some("Attribute name not in key schema (Service: DynamoDb, Status Code: 400)"),
            ),
            ev("3", "Queue", "UPDATE_IN_PROGRESS", None),
        ]);
        let failure = p.first_failure().expect("a failure");
        assert_eq!(failure.logical_id, "Table");
        assert!(failure
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("key schema")));
        assert!(p.plain_line(failure).contains("UPDATE_FAILED"));
    }

    #[test]
    fn the_live_frame_fits_and_puts_unfinished_work_first() {
        let mut p = Progress::new([]);
        let mut events: Vec<Event> = (0..40)
            .map(|i| {
                ev(
                    &format!("e{i}"),
                    &format!("R{i:02}"),
                    "CREATE_COMPLETE",
                    None,
                )
            })
            .collect();
        events.push(ev("busy", "Slow", "CREATE_IN_PROGRESS", None));
        events.reverse(); // newest first, as CloudFormation lists them
        p.apply(events);
        let frame = p.frame("s");
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(lines.len(), FRAME_ROWS + 1, "{frame}");
        assert!(
            lines[0].contains("CREATE_IN_PROGRESS") && lines[0].contains("Slow"),
            "{frame}"
        );
        assert!(
            lines[1].contains("R39"),
            "then the latest finished: {frame}"
        );
        assert!(
            lines[FRAME_ROWS].contains("40/41 resources done"),
            "{frame}"
        );
    }

    #[test]
    fn no_failure_when_all_complete() {
        let mut p = Progress::new([]);
        p.apply(vec![ev("1", "A", "CREATE_COMPLETE", None)]);
        assert!(p.first_failure().is_none());
    }
}
