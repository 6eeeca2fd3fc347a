//! `mdsync push-person`: Marketo's "Sync Person to Microsoft" — create the lead (or contact) if the person
//! is not in Dynamics yet, do nothing if it is. The email is looked up among leads and contacts first so a
//! person is never created twice; a crash between the create and the stamp is healed by that lookup.

use mdsync_dataverse_client::{QueryOptions, literal};
use mdsync_state::{CycleCommit, NewDeadLetter};
use mdsync_sync_core::mapping::{MSFT_ID, MSFT_TYPE};
use mdsync_sync_core::plan::{PushPlan, PushRequest, plan_push_person};
use mdsync_sync_core::record::{CrmEntity, Flow, MarketoObject, MarketoPerson};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::EngineError;

/// Who to push: a Marketo lead id or an email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersonRef {
    Id(i64),
    Email(String),
}

impl PersonRef {
    /// Digits are a Marketo id, anything else an email.
    pub fn parse(s: &str) -> PersonRef {
        let t = s.trim();
        match t.parse::<i64>() {
            Ok(id) => PersonRef::Id(id),
            Err(_) => PersonRef::Email(t.to_owned()),
        }
    }
}

/// What `push-person` did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PushOutcome {
    /// Already linked, or already carrying a CRM id: nothing done.
    AlreadyInCrm {
        entity: CrmEntity,
        crm_id: Uuid,
        marketo_id: i64,
    },
    /// A lead or contact with the person's email existed: linked to it, nothing created.
    Linked {
        entity: CrmEntity,
        crm_id: Uuid,
        marketo_id: i64,
    },
    Created {
        entity: CrmEntity,
        crm_id: Uuid,
        marketo_id: i64,
    },
    /// The person could not be written to Dynamics; see `mdsync errors`.
    Failed {
        marketo_id: i64,
        code: String,
        message: String,
    },
}

impl Engine {
    /// Pushes one Marketo person to Dynamics as a lead (or, with `as_entity = Contact`, a contact).
    pub async fn push_person(
        &self,
        who: &PersonRef,
        as_entity: CrmEntity,
        owner: Option<Uuid>,
    ) -> Result<PushOutcome, EngineError> {
        let d = self.discovery().await?;
        let entity = if as_entity == CrmEntity::Contact {
            CrmEntity::Contact
        } else {
            CrmEntity::Lead
        };
        let mut fields: Vec<String> = vec![
            "id".into(),
            "email".into(),
            MSFT_ID.into(),
            MSFT_TYPE.into(),
        ];
        if let Some(m) = d.mappings.get(entity) {
            for f in m.flowing(Flow::ToDynamics) {
                if !fields.contains(&f.marketo) {
                    fields.push(f.marketo.clone());
                }
            }
        }
        let names: Vec<&str> = fields.iter().map(String::as_str).collect();
        let record = match who {
            PersonRef::Id(id) => self.marketo.lead_by_id(*id, &names).await?,
            PersonRef::Email(email) => {
                let mut pager =
                    self.marketo
                        .leads_by_filter("email", &[email.as_str()], &names, None)?;
                pager
                    .next_page()
                    .await?
                    .and_then(|page| page.into_iter().next())
            }
        };
        let Some(record) = record else {
            return Err(EngineError::InvalidInput(format!(
                "no Marketo person {}",
                match who {
                    PersonRef::Id(id) => format!("with id {id}"),
                    PersonRef::Email(e) => format!("with email {e}"),
                }
            )));
        };
        let Some(person_id) = record.get("id").and_then(Value::as_i64) else {
            return Err(EngineError::Protocol(
                "a Marketo person without an id".into(),
            ));
        };
        let person = MarketoPerson {
            id: person_id,
            fields: record,
        };
        let link = self
            .store
            .with(move |s| s.links_by_marketo_ids(MarketoObject::Person, &[person_id]))
            .await?
            .into_iter()
            .next();
        if link.is_none()
            && let Some(crm_id) = person
                .fields
                .get(MSFT_ID)
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
        {
            let entity = match person.fields.get(MSFT_TYPE).and_then(Value::as_str) {
                Some(t) if t.eq_ignore_ascii_case("contact") => CrmEntity::Contact,
                _ => CrmEntity::Lead,
            };
            return Ok(PushOutcome::AlreadyInCrm {
                entity,
                crm_id,
                marketo_id: person_id,
            });
        }
        let crm_match = match (&link, person.email()) {
            (None, Some(email)) => self.find_by_email(email).await?,
            _ => None,
        };
        let settings = self.plan_settings(&d);
        let plan = plan_push_person(
            &settings,
            PushRequest {
                person: &person,
                link: link.as_ref(),
                crm_match,
                as_entity: entity,
                owner,
                new_id: Uuid::new_v4(),
                now: chrono::Utc::now(),
            },
        );
        match plan {
            PushPlan::AlreadyLinked { crm_entity, crm_id } => Ok(PushOutcome::AlreadyInCrm {
                entity: crm_entity,
                crm_id,
                marketo_id: person_id,
            }),
            PushPlan::DeadLetter(dl) => {
                let (code, message) = (dl.code.clone(), dl.message.clone());
                self.commit(CycleCommit {
                    dead_letters: vec![NewDeadLetter::from(dl)],
                    ..CycleCommit::default()
                })
                .await?;
                Ok(PushOutcome::Failed {
                    marketo_id: person_id,
                    code,
                    message,
                })
            }
            PushPlan::LinkExisting { ops } | PushPlan::Create { ops } => {
                let created = ops.len() > 1;
                let (entity, crm_id) = ops
                    .last()
                    .map(|op| (op.entity, op.crm_id))
                    .ok_or_else(|| EngineError::Protocol("an empty push plan".into()))?;
                // In order: the Dataverse create, then the person's msftId stamp.
                for op in ops {
                    let done = self.writer().execute(std::slice::from_ref(&op)).await?;
                    let failed = done
                        .dead_letters
                        .first()
                        .map(|d| (d.code.clone(), d.message.clone()));
                    self.commit(CycleCommit {
                        effects: done.effects,
                        dead_letters: done.dead_letters,
                        ..CycleCommit::default()
                    })
                    .await?;
                    if let Some((code, message)) = failed {
                        return Ok(PushOutcome::Failed {
                            marketo_id: person_id,
                            code,
                            message,
                        });
                    }
                }
                Ok(if created {
                    PushOutcome::Created {
                        entity,
                        crm_id,
                        marketo_id: person_id,
                    }
                } else {
                    PushOutcome::Linked {
                        entity,
                        crm_id,
                        marketo_id: person_id,
                    }
                })
            }
        }
    }

    /// A lead, else a contact, whose `emailaddress1` is `email`.
    async fn find_by_email(&self, email: &str) -> Result<Option<(CrmEntity, Uuid)>, EngineError> {
        for entity in [CrmEntity::Lead, CrmEntity::Contact] {
            let options = QueryOptions::new()
                .select([entity.primary_key()])
                .filter(format!(
                    "emailaddress1 eq {}",
                    literal(&Value::String(email.to_owned()))
                ));
            if let Some(row) = self.crm.query_first(entity.entity_set(), &options).await?
                && let Some(id) = row
                    .get(entity.primary_key())
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
            {
                return Ok(Some((entity, id)));
            }
        }
        Ok(None)
    }
}
