//! What a setup step did, in the words printed to the user as it happens.

use std::fmt;

/// The result of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepStatus {
    /// The step changed the org.
    Done(String),
    /// The org was already in the wanted state; nothing was sent.
    AlreadyDone(String),
    /// Dry run: what the step would change.
    WouldDo(String),
    /// The step failed; the run stops and a re-run continues from here.
    Failed(String),
    /// Not run because an earlier step failed or was refused.
    Skipped(String),
}

impl StepStatus {
    /// A short tag for tables.
    pub fn tag(&self) -> &'static str {
        match self {
            StepStatus::Done(_) => "done",
            StepStatus::AlreadyDone(_) => "already done",
            StepStatus::WouldDo(_) => "would do",
            StepStatus::Failed(_) => "FAILED",
            StepStatus::Skipped(_) => "skipped",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            StepStatus::Done(d)
            | StepStatus::AlreadyDone(d)
            | StepStatus::WouldDo(d)
            | StepStatus::Failed(d)
            | StepStatus::Skipped(d) => d,
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, StepStatus::Failed(_) | StepStatus::Skipped(_))
    }
}

/// One step of a setup command and how it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepReport {
    pub step: String,
    pub status: StepStatus,
}

impl fmt::Display for StepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}: {}",
            self.status.tag(),
            self.step,
            self.status.detail()
        )
    }
}

/// What a setup command reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Step(StepReport),
    /// A warning or explanation that does not fail the run.
    Note(String),
}

/// Everything a setup command reported, in order.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub steps: Vec<StepReport>,
    pub notes: Vec<String>,
}

impl Outcome {
    /// True when no step failed or was skipped.
    pub fn ok(&self) -> bool {
        !self.steps.iter().any(|s| s.status.is_failure())
    }

    /// True when every step was already done (a re-run that changed nothing).
    pub fn all_already_done(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::AlreadyDone(_)))
    }

    pub(crate) fn step(&mut self, sink: &mut dyn FnMut(&Event), step: &str, status: StepStatus) {
        let report = StepReport {
            step: step.to_string(),
            status,
        };
        sink(&Event::Step(report.clone()));
        self.steps.push(report);
    }

    pub(crate) fn note(&mut self, sink: &mut dyn FnMut(&Event), note: String) {
        sink(&Event::Note(note.clone()));
        self.notes.push(note);
    }
}
