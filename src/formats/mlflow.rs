//! The mlflow family.

use super::{Checked, Detection, Finding, Format, ModelFiles};
use crate::error::Result;

pub(super) fn detect(_files: &dyn ModelFiles) -> Result<Option<Detection>> {
    Ok(None)
}

pub(super) fn check(format: &Format, _files: &dyn ModelFiles) -> Result<Checked> {
    Ok(Checked {
        findings: vec![Finding::pass(
            "format",
            format!(
                "format {} recorded; modelcar has no content check for it",
                format.name
            ),
        )],
        ..Checked::default()
    })
}
