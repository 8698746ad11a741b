//! Device names as TensorFlow writes them (`/job:worker/replica:0/task:1/device:CPU:0`),
//! parsed into a typed [`DeviceSpec`]; partial specs (`/device:GPU:*`, `/job:ps`) leave the
//! missing parts unset so they can be merged with defaults.
//!
//! Invariant: `parse(spec.to_string()) == spec`; device types are stored upper-case.

use std::fmt;

use crate::error::{Error, Result};

/// A full or partial device name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceSpec {
    pub job: Option<String>,
    pub replica: Option<u32>,
    pub task: Option<u32>,
    /// `CPU`, `GPU`, ...
    pub device_type: Option<String>,
    /// `None` is `*` (any device of the type).
    pub device_index: Option<u32>,
}

impl DeviceSpec {
    /// Parses TensorFlow's device name forms, including legacy `/cpu:0` and `/gpu:1`.
    pub fn parse(text: &str) -> Result<DeviceSpec> {
        let mut spec = DeviceSpec::default();
        let bad =
            |why: &str| Error::invalid_argument(format!("invalid device name '{text}': {why}"));
        let number = |v: &str| -> Result<Option<u32>> {
            if v == "*" {
                return Ok(None);
            }
            v.parse()
                .map(Some)
                .map_err(|_| bad(&format!("'{v}' is not a number")))
        };
        for part in text.split('/').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once(':')
                .ok_or_else(|| bad("expected key:value"))?;
            match key.to_ascii_lowercase().as_str() {
                "job" if !value.is_empty() => spec.job = Some(value.to_string()),
                "replica" => spec.replica = number(value)?,
                "task" => spec.task = number(value)?,
                "device" => {
                    let (ty, index) = value.split_once(':').unwrap_or((value, "*"));
                    if ty.is_empty() {
                        return Err(bad("empty device type"));
                    }
                    spec.device_type = Some(ty.to_ascii_uppercase());
                    spec.device_index = number(index)?;
                }
                ty if ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    spec.device_type = Some(ty.to_ascii_uppercase());
                    spec.device_index = number(value)?;
                }
                _ => return Err(bad(&format!("unknown part '{part}'"))),
            }
        }
        Ok(spec)
    }

    pub fn is_empty(&self) -> bool {
        *self == DeviceSpec::default()
    }

    /// Fills the parts this spec leaves unset from `defaults`.
    pub fn merged_with(&self, defaults: &DeviceSpec) -> DeviceSpec {
        DeviceSpec {
            job: self.job.clone().or_else(|| defaults.job.clone()),
            replica: self.replica.or(defaults.replica),
            task: self.task.or(defaults.task),
            device_type: self
                .device_type
                .clone()
                .or_else(|| defaults.device_type.clone()),
            device_index: if self.device_type.is_some() {
                self.device_index
            } else {
                defaults.device_index
            },
        }
    }

    /// Whether a device named `full` satisfies every part this spec sets.
    pub fn matches(&self, full: &DeviceSpec) -> bool {
        fn ok<T: PartialEq>(want: &Option<T>, have: &Option<T>) -> bool {
            want.is_none() || want == have
        }
        ok(&self.job, &full.job)
            && ok(&self.replica, &full.replica)
            && ok(&self.task, &full.task)
            && ok(&self.device_type, &full.device_type)
            && ok(&self.device_index, &full.device_index)
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(job) = &self.job {
            write!(f, "/job:{job}")?;
        }
        if let Some(r) = self.replica {
            write!(f, "/replica:{r}")?;
        }
        if let Some(t) = self.task {
            write!(f, "/task:{t}")?;
        }
        if let Some(ty) = &self.device_type {
            match self.device_index {
                Some(i) => write!(f, "/device:{ty}:{i}")?,
                None => write!(f, "/device:{ty}:*")?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<DeviceSpec> {
        DeviceSpec::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tf_forms() {
        let d = DeviceSpec::parse("/job:worker/replica:0/task:1/device:CPU:0").unwrap();
        assert_eq!(d.job.as_deref(), Some("worker"));
        assert_eq!(
            (d.replica, d.task, d.device_index),
            (Some(0), Some(1), Some(0))
        );
        assert_eq!(d.to_string(), "/job:worker/replica:0/task:1/device:CPU:0");
        let g = DeviceSpec::parse("/device:GPU:*").unwrap();
        assert_eq!(
            (g.device_type.as_deref(), g.device_index),
            (Some("GPU"), None)
        );
        assert_eq!(
            DeviceSpec::parse("/gpu:1").unwrap().to_string(),
            "/device:GPU:1"
        );
        assert!(DeviceSpec::parse("").unwrap().is_empty());
        for bad in ["/job", "/task:x", "/device::0", "/wat?:1"] {
            assert!(DeviceSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_and_match() {
        let ps = DeviceSpec::parse("/job:ps").unwrap();
        let def = DeviceSpec::parse("/job:worker/task:0/device:CPU:0").unwrap();
        let m = ps.merged_with(&def);
        assert_eq!(m.to_string(), "/job:ps/task:0/device:CPU:0");
        assert!(ps.matches(&m));
        assert!(!DeviceSpec::parse("/job:worker").unwrap().matches(&m));
    }
}
