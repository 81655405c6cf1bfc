//! Specs on the wire: agents, roles, jobs, resources, checkpoints.

use std::collections::BTreeMap;

use super::{required_enum, WireError, Within};
use crate::model::{
    AgentId, AgentSpec, CheckpointInfo, Constraint, ConstraintOp, JobKind, JobSpec,
    PlacementStrategy, Resources, RestartPolicy, RoleSpec, DEFAULT_ROLE,
};
use crate::proto;

/// Absent is unbounded (the dimension's maximum value).
pub(crate) fn resources_to(r: &Resources) -> proto::Resources {
    proto::Resources {
        cores: (r.cores != u32::MAX).then_some(r.cores),
        memory_bytes: (r.memory_bytes != u64::MAX).then_some(r.memory_bytes),
        disk_bytes: (r.disk_bytes != u64::MAX).then_some(r.disk_bytes),
    }
}

pub(crate) fn resources_from(r: proto::Resources) -> Resources {
    Resources {
        cores: r.cores.unwrap_or(u32::MAX),
        memory_bytes: r.memory_bytes.unwrap_or(u64::MAX),
        disk_bytes: r.disk_bytes.unwrap_or(u64::MAX),
    }
}

pub(crate) fn reservations_to(
    by_agent: &BTreeMap<AgentId, Resources>,
) -> std::collections::HashMap<u64, proto::Resources> {
    by_agent
        .iter()
        .map(|(agent, r)| (*agent, resources_to(r)))
        .collect()
}

pub(crate) fn reservations_from(
    by_agent: std::collections::HashMap<u64, proto::Resources>,
) -> BTreeMap<AgentId, Resources> {
    by_agent
        .into_iter()
        .map(|(agent, r)| (agent, resources_from(r)))
        .collect()
}

pub(crate) fn agent_spec_to(spec: &AgentSpec) -> proto::AgentSpec {
    proto::AgentSpec {
        id: spec.id,
        hostname: spec.hostname.clone(),
        cores: spec.cores.iter().copied().collect(),
        memory_bytes: spec.memory_bytes,
        disk_bytes: spec.disk_bytes,
        attributes: spec
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

pub(crate) fn agent_spec_from(spec: proto::AgentSpec) -> Result<AgentSpec, WireError> {
    let cores_given = spec.cores.len();
    let cores: std::collections::BTreeSet<u32> = spec.cores.into_iter().collect();
    if cores.len() != cores_given {
        return Err(WireError {
            field: "cores".into(),
            reason: "a core id is listed twice".into(),
        });
    }
    Ok(AgentSpec {
        id: spec.id,
        hostname: spec.hostname,
        cores,
        memory_bytes: spec.memory_bytes,
        disk_bytes: spec.disk_bytes,
        attributes: spec.attributes.into_iter().collect(),
    })
}

pub(crate) fn role_spec_to(spec: &RoleSpec) -> proto::RoleSpec {
    proto::RoleSpec {
        name: spec.name.clone(),
        weight: spec.weight,
        quota: spec.quota.as_ref().map(resources_to),
        limit: spec.limit.as_ref().map(resources_to),
        reservations: reservations_to(&spec.reservations),
    }
}

pub(crate) fn role_spec_from(spec: proto::RoleSpec) -> RoleSpec {
    RoleSpec {
        name: spec.name,
        weight: spec.weight,
        quota: spec.quota.map(resources_from),
        limit: spec.limit.map(resources_from),
        reservations: reservations_from(spec.reservations),
    }
}

pub(crate) fn job_kind_to(kind: &JobKind) -> proto::job_spec::Kind {
    use proto::job_spec::Kind as K;
    match kind.clone() {
        JobKind::Stream {
            spec_toml,
            parallelism,
            memory_per_shard_bytes,
        } => K::Stream(proto::StreamJob {
            spec_toml,
            parallelism,
            memory_per_shard_bytes,
        }),
        JobKind::Command {
            argv,
            cpus,
            memory_bytes,
            disk_bytes,
        } => K::Command(proto::CommandJob {
            argv,
            cpus,
            memory_bytes,
            disk_bytes,
        }),
    }
}

pub(crate) fn job_kind_from(kind: Option<proto::job_spec::Kind>) -> Result<JobKind, WireError> {
    use proto::job_spec::Kind as K;
    Ok(
        match kind.ok_or_else(|| WireError::missing("kind", "stream, command"))? {
            K::Stream(s) => JobKind::Stream {
                spec_toml: s.spec_toml,
                parallelism: s.parallelism,
                memory_per_shard_bytes: s.memory_per_shard_bytes,
            },
            K::Command(c) => JobKind::Command {
                argv: c.argv,
                cpus: c.cpus,
                memory_bytes: c.memory_bytes,
                disk_bytes: c.disk_bytes,
            },
        },
    )
}

pub(crate) fn job_spec_to(spec: &JobSpec) -> proto::JobSpec {
    use proto::restart_policy::Policy as R;
    let restart = match spec.restart {
        RestartPolicy::Never => R::Never(proto::Empty {}),
        RestartPolicy::FixedDelay { attempts, delay_ms } => {
            R::FixedDelay(proto::FixedDelay { attempts, delay_ms })
        }
        RestartPolicy::ExponentialBackoff {
            attempts,
            initial_ms,
            max_ms,
        } => R::ExponentialBackoff(proto::ExponentialBackoff {
            attempts,
            initial_ms,
            max_ms,
        }),
    };
    proto::JobSpec {
        name: spec.name.clone(),
        role: spec.role.clone(),
        priority: spec.priority,
        estimated_duration_ms: spec.estimated_duration_ms,
        kind: Some(job_kind_to(&spec.kind)),
        constraints: spec
            .constraints
            .iter()
            .map(|c| proto::Constraint {
                attribute: c.attribute.clone(),
                op: match c.op {
                    ConstraintOp::Eq => proto::ConstraintOp::Eq,
                    ConstraintOp::Ne => proto::ConstraintOp::Ne,
                    ConstraintOp::In => proto::ConstraintOp::In,
                } as i32,
                values: c.values.clone(),
            })
            .collect(),
        placement: match spec.placement {
            PlacementStrategy::BinPack => proto::PlacementStrategy::BinPack,
            PlacementStrategy::Spread => proto::PlacementStrategy::Spread,
        } as i32,
        restart: Some(proto::RestartPolicy {
            policy: Some(restart),
        }),
    }
}

pub(crate) fn job_spec_from(spec: proto::JobSpec) -> Result<JobSpec, WireError> {
    use proto::restart_policy::Policy as R;
    let constraints = spec
        .constraints
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let op = match required_enum::<proto::ConstraintOp>("op", c.op, "eq, ne, in")
                .within(&format!("constraints[{i}]"))?
            {
                proto::ConstraintOp::Unspecified => unreachable!("required_enum refuses 0"),
                proto::ConstraintOp::Eq => ConstraintOp::Eq,
                proto::ConstraintOp::Ne => ConstraintOp::Ne,
                proto::ConstraintOp::In => ConstraintOp::In,
            };
            Ok(Constraint {
                attribute: c.attribute,
                op,
                values: c.values,
            })
        })
        .collect::<Result<_, WireError>>()?;
    let placement = match proto::PlacementStrategy::try_from(spec.placement) {
        Ok(proto::PlacementStrategy::Unspecified | proto::PlacementStrategy::BinPack) => {
            PlacementStrategy::BinPack
        }
        Ok(proto::PlacementStrategy::Spread) => PlacementStrategy::Spread,
        Err(_) => {
            return Err(WireError::unknown(
                "placement",
                spec.placement,
                "bin_pack, spread",
            ))
        }
    };
    let restart = match spec.restart.and_then(|r| r.policy) {
        None | Some(R::Never(_)) => RestartPolicy::Never,
        Some(R::FixedDelay(f)) => RestartPolicy::FixedDelay {
            attempts: f.attempts,
            delay_ms: f.delay_ms,
        },
        Some(R::ExponentialBackoff(e)) => RestartPolicy::ExponentialBackoff {
            attempts: e.attempts,
            initial_ms: e.initial_ms,
            max_ms: e.max_ms,
        },
    };
    Ok(JobSpec {
        name: spec.name,
        role: if spec.role.is_empty() {
            DEFAULT_ROLE.to_owned()
        } else {
            spec.role
        },
        priority: spec.priority,
        estimated_duration_ms: spec.estimated_duration_ms,
        kind: job_kind_from(spec.kind)?,
        constraints,
        placement,
        restart,
    })
}

pub(crate) fn checkpoint_to(c: &CheckpointInfo) -> proto::CheckpointInfo {
    proto::CheckpointInfo {
        id: c.id,
        handles: c.handles.clone(),
        triggered_ms: c.triggered_ms,
        duration_ms: c.duration_ms,
        bytes: c.bytes,
        alignment_us: c.alignment_us.clone(),
    }
}

/// The leader stamps `completed_ms` when it commits the completion.
pub(crate) fn checkpoint_from(c: proto::CheckpointInfo) -> CheckpointInfo {
    CheckpointInfo {
        id: c.id,
        handles: c.handles,
        triggered_ms: c.triggered_ms,
        duration_ms: c.duration_ms,
        bytes: c.bytes,
        alignment_us: c.alignment_us,
        completed_ms: 0,
    }
}
