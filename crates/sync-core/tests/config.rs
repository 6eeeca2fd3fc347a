//! The `[mapping]` section exactly as users write it in `mdsync.toml`.

use mdsync_sync_core::mapping::{ConflictPolicy, Direction, MappingConfig, Mappings};
use mdsync_sync_core::record::CrmEntity;

#[derive(serde::Deserialize)]
struct File {
    mapping: MappingConfig,
}

#[test]
fn toml_mapping_tables_override_defaults() -> Result<(), Box<dyn std::error::Error>> {
    let file: File = toml::from_str(
        r#"
        [[mapping.lead]]
        crm = "new_score"
        marketo = "leadScore"
        direction = "to_dynamics"
        conflict = "marketo_wins"

        [[mapping.contact]]
        crm = "lastname"
        marketo = "lastName"
        conflict = "newest_wins"

        [[mapping.contact]]
        crm = "mobilephone"
        marketo = "mobilePhone"
        enabled = false
        "#,
    )?;
    let m = Mappings::from_config(&file.mapping)?;
    let lead = m.get(CrmEntity::Lead).ok_or("lead")?;
    let score = lead.by_crm("new_score").ok_or("new_score")?;
    assert_eq!(
        (score.direction, score.conflict),
        (Direction::ToDynamics, ConflictPolicy::MarketoWins)
    );
    let contact = m.get(CrmEntity::Contact).ok_or("contact")?;
    assert_eq!(
        contact.by_crm("lastname").map(|f| f.conflict),
        Some(ConflictPolicy::NewestWins)
    );
    assert!(contact.by_crm("mobilephone").is_none());
    Ok(())
}

#[test]
fn toml_errors_name_the_key() {
    let err = toml::from_str::<File>(
        r#"
        [[mapping.lead]]
        crm = "firstname"
        marketo = "firstName"
        confict = "newest_wins"
        "#,
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("unknown field `confict`"), "{err}");
    assert!(
        err.contains("expected one of `crm`, `marketo`, `direction`, `conflict`, `enabled`"),
        "{err}"
    );
}
