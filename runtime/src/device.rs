//! The devices of a session: [`Device`] (a full TensorFlow device name, its kernel
//! [`DeviceType`], a random incarnation and its share of the machine's threads) and
//! [`DeviceSet`] (all devices, looked up by name or by a partial spec).
//!
//! Invariants: device names are full (`/job:J/replica:R/task:T/device:TYPE:N`) and unique
//! in a set; incarnations are non-zero and differ between devices of a set; every device
//! gets at least one thread; the client device (where feeds come from and fetches go) is
//! the set's first CPU.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use rill_graph::{DeviceSpec, Error, Result};
use rill_kernels::DeviceType;

/// One device of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The full name, e.g. `/job:localhost/replica:0/task:0/device:CPU:1`.
    pub spec: DeviceSpec,
    /// Which kernels run here.
    pub device_type: DeviceType,
    /// Distinguishes this device from one of the same name in another process lifetime
    /// (part of every rendezvous key it sends); random and non-zero.
    pub incarnation: u64,
    /// Threads this device's executor may use.
    pub threads: usize,
}

impl Device {
    /// A device named `name` (a full name) of `device_type` with `threads` threads.
    pub fn new(name: &str, device_type: DeviceType, threads: usize) -> Result<Device> {
        let spec = DeviceSpec::parse(name)?;
        let full = spec.job.is_some()
            && spec.replica.is_some()
            && spec.task.is_some()
            && spec.device_index.is_some();
        if !full || spec.device_type.as_deref() != Some(device_type.name()) {
            return Err(Error::invalid_argument(format!(
                "'{name}' is not a full {} device name like \
                 /job:localhost/replica:0/task:0/device:{}:0",
                device_type.name(),
                device_type.name()
            )));
        }
        Ok(Device {
            spec,
            device_type,
            incarnation: random_incarnation(),
            threads: threads.max(1),
        })
    }

    /// The full name as TensorFlow writes it.
    pub fn name(&self) -> String {
        self.spec.to_string()
    }
}

/// A random non-zero u64 (std's per-process random hash keys, a clock and a counter): device
/// and task incarnations, step ids, session handles.
pub fn random_incarnation() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish().max(1)
}

/// The devices of a session, in a fixed order.
#[derive(Debug, Clone)]
pub struct DeviceSet {
    devices: Vec<Device>,
}

/// The defaults a partial device spec is completed with in one process.
pub fn local_defaults() -> DeviceSpec {
    DeviceSpec {
        job: Some("localhost".into()),
        replica: Some(0),
        task: Some(0),
        device_type: None,
        device_index: None,
    }
}

impl DeviceSet {
    /// A set of `devices`; InvalidArgument when empty, when two share a name, or when
    /// there is no CPU (the client device).
    pub fn new(devices: Vec<Device>) -> Result<DeviceSet> {
        if !devices.iter().any(|d| d.device_type == DeviceType::Cpu) {
            return Err(Error::invalid_argument("a device set needs a CPU device"));
        }
        for (i, d) in devices.iter().enumerate() {
            if devices[..i].iter().any(|e| e.spec == d.spec) {
                return Err(Error::invalid_argument(format!(
                    "device '{}' is listed twice",
                    d.spec
                )));
            }
            if devices[..i].iter().any(|e| e.incarnation == d.incarnation) {
                return Err(Error::invalid_argument(format!(
                    "device '{}' repeats another device's incarnation",
                    d.spec
                )));
            }
        }
        Ok(DeviceSet { devices })
    }

    /// `n` (at least 1) CPU devices `/job:localhost/replica:0/task:0/device:CPU:i`, sharing
    /// the machine's threads (each gets at least one).
    pub fn local_cpus(n: usize) -> DeviceSet {
        let n = n.max(1);
        let total = std::thread::available_parallelism().map_or(1, |p| p.get());
        let devices: Vec<Device> = (0..n)
            .map(|i| {
                // Spread the remainder over the first devices.
                let threads = (total / n + usize::from(i < total % n)).max(1);
                let mut spec = local_defaults();
                spec.device_type = Some(DeviceType::Cpu.name().to_string());
                spec.device_index = Some(i as u32);
                Device {
                    spec,
                    device_type: DeviceType::Cpu,
                    incarnation: random_incarnation(),
                    threads,
                }
            })
            .collect();
        DeviceSet { devices }
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The device with this full spec.
    pub fn get(&self, spec: &DeviceSpec) -> Option<&Device> {
        self.devices.iter().find(|d| &d.spec == spec)
    }

    /// The device named `name` (any form TensorFlow accepts for a full name), or NotFound.
    pub fn lookup(&self, name: &str) -> Result<&Device> {
        let spec = DeviceSpec::parse(name)?;
        self.get(&spec)
            .ok_or_else(|| Error::not_found(format!("no device named '{name}' in this session")))
    }

    /// The position of the device with this full spec.
    pub fn index_of(&self, spec: &DeviceSpec) -> Option<usize> {
        self.devices.iter().position(|d| &d.spec == spec)
    }

    /// The devices a partial spec matches (after completing it with the local defaults),
    /// in set order.
    pub fn find_matching(&self, spec: &DeviceSpec) -> Vec<&Device> {
        let spec = spec.merged_with(&local_defaults());
        self.devices
            .iter()
            .filter(|d| spec.matches(&d.spec))
            .collect()
    }

    /// Where feeds come from and fetches go: the first CPU device (`CPU:0` for
    /// [`DeviceSet::local_cpus`]).
    pub fn client(&self) -> &Device {
        self.devices
            .iter()
            .find(|d| d.device_type == DeviceType::Cpu)
            .unwrap_or(&self.devices[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_cpus_names_threads_and_incarnations() {
        let set = DeviceSet::local_cpus(3);
        assert_eq!(set.len(), 3);
        let names: Vec<String> = set.devices().iter().map(Device::name).collect();
        assert_eq!(
            names,
            [0, 1, 2]
                .map(|i| format!("/job:localhost/replica:0/task:0/device:CPU:{i}"))
                .to_vec()
        );
        let total = std::thread::available_parallelism().map_or(1, |p| p.get());
        let threads: usize = set.devices().iter().map(|d| d.threads).sum();
        assert_eq!(threads, total.max(3));
        assert!(set.devices().iter().all(|d| d.threads >= 1));
        let incs: Vec<u64> = set.devices().iter().map(|d| d.incarnation).collect();
        assert!(incs.iter().all(|&i| i != 0));
        assert!(incs[0] != incs[1] && incs[1] != incs[2] && incs[0] != incs[2]);
        assert_eq!(set.client().name(), names[0]);
        assert_eq!(DeviceSet::local_cpus(0).len(), 1);
    }

    #[test]
    fn lookup_and_matching() {
        let set = DeviceSet::local_cpus(2);
        let d = set.lookup("/job:localhost/replica:0/task:0/cpu:1").unwrap();
        assert_eq!(d.spec.device_index, Some(1));
        assert_eq!(set.index_of(&d.spec), Some(1));
        let e = set
            .lookup("/job:localhost/replica:0/task:0/device:CPU:5")
            .unwrap_err();
        assert_eq!(e.code, rill_graph::Code::NotFound);
        let any = DeviceSpec::parse("/device:CPU:*").unwrap();
        assert_eq!(set.find_matching(&any).len(), 2);
        let one = DeviceSpec::parse("/device:CPU:1").unwrap();
        assert_eq!(set.find_matching(&one)[0].spec.device_index, Some(1));
        assert_eq!(set.find_matching(&DeviceSpec::default()).len(), 2);
        assert!(set
            .find_matching(&DeviceSpec::parse("/device:GPU:0").unwrap())
            .is_empty());
        assert!(set
            .find_matching(&DeviceSpec::parse("/job:ps").unwrap())
            .is_empty());
    }

    #[test]
    fn explicit_devices_are_checked() {
        let cpu = Device::new(
            "/job:localhost/replica:0/task:0/device:CPU:0",
            DeviceType::Cpu,
            0,
        )
        .unwrap();
        assert_eq!(cpu.threads, 1);
        assert!(Device::new("/device:CPU:0", DeviceType::Cpu, 1).is_err());
        assert!(DeviceSet::new(vec![cpu.clone(), cpu.clone()]).is_err());
        assert!(DeviceSet::new(vec![]).is_err());
        assert_eq!(DeviceSet::new(vec![cpu]).unwrap().len(), 1);
    }
}
