//! Healthy evidence in git, and pushes: a tier that became healthy at a revision is published
//! as `refs/gitopsd/healthy/<tier>/<sha>`, an annotated tag object whose tagger time is when
//! the tier first saw the revision healthy (so a soak can be checked from git alone) and whose
//! message carries the base digest. Daemons fetch them into `refs/gitopsd/evidence/`.

use std::cell::RefCell;
use std::rc::Rc;

use chrono::{DateTime, Utc};
use git2::{ObjectType, Oid, PushOptions, Signature, Time};

use super::{Source, SourceError, auth, ssh_port};
use crate::revision::Revision;
use crate::state::HealthyRecord;

/// Where healthy refs live in the config repo (and in the mirror, for the ones it publishes).
pub const HEALTHY_PREFIX: &str = "refs/gitopsd/healthy/";
/// Where the config repo's healthy refs are fetched to in the mirror.
pub const EVIDENCE_PREFIX: &str = "refs/gitopsd/evidence/";
/// The line of a healthy tag's message that carries the base digest.
const BASE_LINE: &str = "base-digest: ";

/// `refs/gitopsd/healthy/<tier>/<sha>`.
pub fn healthy_ref(tier: &str, revision: &Revision) -> String {
    format!("{HEALTHY_PREFIX}{tier}/{revision}")
}

impl Source {
    /// The bare mirror (read-only uses: history, signatures).
    pub fn repository(&self) -> &git2::Repository {
        &self.repo
    }

    /// What the healthy refs (published by this daemon, or fetched from the config repo) say
    /// `tier` recorded healthy. A lightweight ref (a person's, say) carries no time: it counts
    /// as healthy from now, so it opens a gate but never satisfies a soak by itself.
    pub fn healthy_refs(&self, tier: &str) -> Vec<HealthyRecord> {
        let mut out: Vec<HealthyRecord> = Vec::new();
        for prefix in [HEALTHY_PREFIX, EVIDENCE_PREFIX] {
            let Ok(refs) = self.repo.references_glob(&format!("{prefix}{tier}/*")) else {
                continue;
            };
            for r in refs.flatten() {
                let Ok(name) = r.name() else { continue };
                let Some(revision) = name.rsplit('/').next().map(Revision::from) else {
                    continue;
                };
                let Ok(commit) = r.peel_to_commit() else {
                    continue;
                };
                if revision != Revision::from(commit.id()) {
                    continue;
                }
                let (since, base_digest) =
                    match r.peel(ObjectType::Tag).ok().and_then(|o| o.into_tag().ok()) {
                        Some(tag) => {
                            let since = tag
                                .tagger()
                                .and_then(|t| DateTime::from_timestamp(t.when().seconds(), 0))
                                .unwrap_or_else(Utc::now);
                            let base = tag.message().ok().flatten().and_then(|m| {
                                m.lines()
                                    .find_map(|l| l.strip_prefix(BASE_LINE))
                                    .map(str::to_owned)
                            });
                            (since, base)
                        }
                        None => (Utc::now(), None),
                    };
                match out.iter_mut().find(|h| h.revision == revision) {
                    Some(h) if h.since > since => h.since = since,
                    Some(_) => {}
                    None => out.push(HealthyRecord {
                        revision,
                        since,
                        base_digest,
                    }),
                }
            }
        }
        out
    }

    /// Writes `record` as a healthy tag ref in the mirror and pushes it to the config repo.
    pub fn publish_healthy(&self, tier: &str, record: &HealthyRecord) -> Result<(), SourceError> {
        let name = healthy_ref(tier, &record.revision);
        let fail = |reason: String| SourceError::Push {
            url: self.url.clone(),
            refs: name.clone(),
            reason,
        };
        let oid = Oid::from_str(record.revision.as_str()).map_err(|e| fail(e.to_string()))?;
        let target = self
            .repo
            .find_object(oid, Some(ObjectType::Commit))
            .map_err(|e| fail(format!("the mirror lacks the commit: {e}")))?;
        let tagger = Signature::new(
            "gitopsd",
            "gitopsd@localhost",
            &Time::new(record.since.timestamp(), 0),
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut message = format!("tier {tier} healthy at {}\n", record.revision);
        if let Some(b) = &record.base_digest {
            message += &format!("\n{BASE_LINE}{b}\n");
        }
        let tag = self
            .repo
            .tag_annotation_create(
                &format!("gitopsd-healthy-{tier}"),
                &target,
                &tagger,
                &message,
            )
            .map_err(|e| fail(e.to_string()))?;
        self.repo
            .reference(&name, tag, true, "gitopsd: healthy")
            .map_err(|e| fail(e.to_string()))?;
        self.push(&[format!("+{name}:{name}")])
    }

    /// Pushes `refspecs` from the mirror to the config repo with the fetch's credentials.
    /// A ref the server rejects (not a fast-forward, a hook) is an error naming it.
    pub fn push(&self, refspecs: &[String]) -> Result<(), SourceError> {
        let label = refspecs.join(", ");
        let creds = auth::load(&self.auth, self.kind, &self.token_user, &self.url)?;
        let port = ssh_port(&self.url);
        let trouble = Rc::new(RefCell::new(auth::CallbackTrouble::default()));
        let rejected: Rc<RefCell<Vec<String>>> = Rc::default();
        let result = (|| {
            let mut remote = self.repo.remote_anonymous(&self.url)?;
            let mut cb = auth::callbacks(&creds, port, trouble.clone());
            let r = rejected.clone();
            cb.push_update_reference(move |name, status| {
                if let Some(why) = status {
                    r.borrow_mut().push(format!("{name}: {why}"));
                }
                Ok(())
            });
            let mut po = PushOptions::new();
            po.remote_callbacks(cb);
            remote.push(refspecs, Some(&mut po))
        })();
        if let Err(e) = result {
            let t = trouble.borrow();
            if t.auth_refused || t.host_key.is_some() || e.code() == git2::ErrorCode::Auth {
                return Err(self.classify(e, &t, &label));
            }
            return Err(SourceError::Push {
                url: self.url.clone(),
                refs: label,
                reason: e.message().to_owned(),
            });
        }
        let rejected = rejected.borrow();
        if !rejected.is_empty() {
            return Err(SourceError::Push {
                url: self.url.clone(),
                refs: label,
                reason: format!("rejected: {}", rejected.join("; ")),
            });
        }
        Ok(())
    }
}
