//! The audit trail: one record per request answered — every access decision, every change —
//! shaped as a DICOM audit message (PS3.15 A.5, the schema's elements and attributes as JSON
//! members, one object per line), so that what a SIEM or an ATNA repository reads from
//! dcm4chee reads from wado too. The core makes the record; a frontend only writes it to its
//! sink (a file natively, a queue at the edge) and counts what it could not write.
//!
//! | Request | EventID (DCM) | EventActionCode |
//! |---|---|---|
//! | QIDO-RS search, change feed | 110112 Query | E |
//! | WADO-RS retrieval (instances, metadata, frames, rendered, bulk data, zip, versions) | 110104 DICOM Instances Transferred | R |
//! | STOW-RS | 110104 DICOM Instances Transferred | C |
//! | PATCH (correction) | 110103 DICOM Instances Accessed | U |
//! | DELETE | 110105 DICOM Study Deleted | D |
//! | a share link made | 110113 Security Alert (110138 Object Security Attributes Changed) | E |
//!
//! EventOutcomeIndicator: 0 when answered 2xx/3xx; 4 (minor failure) for the client's errors,
//! denials (401, 403) included; 8 (serious failure) for the server's.

use crate::route::{Resource, Route, Target};
use base64::Engine as _;
use serde_json::{json, Value};

/// A request's id: shared by the request log, the response (`X-Request-Id`) and the audit
/// record. From the request's random bytes.
pub fn request_id(entropy: &[u8; 16]) -> String {
    hex::encode(&entropy[8..16])
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2026-12-06T05:19:32Z`): the records' times,
/// and a syslog header's.
pub fn timestamp(secs: u64) -> String {
    crate::search::feed::rfc3339(secs)
}

/// What the record says of one request.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// When (seconds since the Unix epoch).
    pub time: u64,
    /// HTTP method.
    pub method: &'a str,
    /// Path, as received.
    pub path: &'a str,
    /// Query string.
    pub query: Option<&'a str>,
    /// The client's address.
    pub client: Option<&'a str>,
    /// Who, as the credentials say (a JWT's `sub`, `token:…`, `share:…`, `anonymous`).
    pub subject: &'a str,
    /// The route, when the path was one.
    pub route: Option<&'a Route>,
    /// Studies written (STOW-RS), besides the one the path names.
    pub studies: &'a [String],
    /// The patient IDs of the studies named (the path's, those stored into), when known.
    pub patients: &'a [String],
    /// Response status.
    pub status: u16,
}

fn code(code: &str, text: &str) -> Value {
    json!({"csd-code": code, "codeSystemName": "DCM", "originalText": text})
}

/// The participant object of a patient (PS3.15 A.5.2.5: person, patient, its ID).
fn patient(id: &str) -> Value {
    json!({
        "ParticipantObjectID": id,
        "ParticipantObjectTypeCode": "1",
        "ParticipantObjectTypeCodeRole": "1",
        "ParticipantObjectIDTypeCode": {"csd-code": "2", "codeSystemName": "RFC-3881", "originalText": "Patient Number"},
    })
}

/// Study Root Query/Retrieve Information Model - FIND: what a QIDO-RS search is, in PS3.15's
/// terms (the Query message's participant object names the SOP class of the query).
const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";

/// The record of `a` (PS3.15 A.5).
pub fn record(a: &Access<'_>) -> Value {
    enum Kind {
        Query,
        Retrieve,
        Store,
        Correct,
        Delete,
        Share,
    }
    let kind = match (a.method, a.route.map(|r| &r.resource)) {
        ("POST", Some(Resource::Share { .. })) => Kind::Share,
        ("POST", _) => Kind::Store,
        ("DELETE", _) => Kind::Delete,
        ("PATCH", _) => Kind::Correct,
        (_, Some(Resource::Search { .. } | Resource::ChangeFeed { .. }) | None) => Kind::Query,
        _ => Kind::Retrieve,
    };
    let (event, action, mut types) = match kind {
        Kind::Query => (code("110112", "Query"), "E", Vec::new()),
        Kind::Retrieve => (
            code("110104", "DICOM Instances Transferred"),
            "R",
            Vec::new(),
        ),
        Kind::Store => (
            code("110104", "DICOM Instances Transferred"),
            "C",
            Vec::new(),
        ),
        Kind::Correct => (code("110103", "DICOM Instances Accessed"), "U", Vec::new()),
        Kind::Delete => (code("110105", "DICOM Study Deleted"), "D", Vec::new()),
        Kind::Share => (
            code("110113", "Security Alert"),
            "E",
            vec![code("110138", "Object Security Attributes Changed")],
        ),
    };
    if a.route
        .is_some_and(|r| matches!(r.resource, Resource::ChangeFeed { .. }))
    {
        types.push(json!({"csd-code": "changefeed", "codeSystemName": "wado", "originalText": "Change feed"}));
    }
    let outcome = match a.status {
        200..=399 => "0",
        400..=499 => "4",
        _ => "8",
    };
    // The requestor sends (a query, a store) or receives (a retrieval); the server the other.
    let (requestor_role, server_role) = match kind {
        Kind::Retrieve => (
            code("110152", "Destination Role ID"),
            code("110153", "Source Role ID"),
        ),
        _ => (
            code("110153", "Source Role ID"),
            code("110152", "Destination Role ID"),
        ),
    };
    let ae = a.route.map(|r| r.ae_title.as_str()).unwrap_or("");
    let mut requestor = json!({
        "UserID": a.subject,
        "UserIsRequestor": true,
        "RoleIDCode": requestor_role,
    });
    if let Some(ip) = a.client {
        requestor["NetworkAccessPointID"] = ip.into();
        requestor["NetworkAccessPointTypeCode"] = "2".into();
    }
    let server = json!({
        "UserID": match a.route {
            Some(r) => format!("{}{}/rs", crate::route::SERVICE_PREFIX, r.ae_title),
            None => "wado".to_owned(),
        },
        "AlternativeUserID": format!("AETITLES={ae}"),
        "UserIsRequestor": false,
        "RoleIDCode": server_role,
    });
    let mut objects = Vec::new();
    objects.extend(
        a.patients
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| patient(p)),
    );
    let study_object = |uid: &str, detail: Vec<Value>| {
        let mut o = json!({
            "ParticipantObjectID": uid,
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3",
            "ParticipantObjectIDTypeCode": code("110180", "Study Instance UID"),
        });
        if !detail.is_empty() {
            o["ParticipantObjectDetail"] = detail.into();
        }
        o
    };
    let path_target = a.route.and_then(|r| match &r.resource {
        Resource::Versions { target, .. } => Some(target.clone()),
        Resource::Share { study } => Some(Target::Study {
            study: study.clone(),
        }),
        other => other.target().cloned(),
    });
    match kind {
        Kind::Query => {
            let scope = a.route.and_then(|r| match &r.resource {
                Resource::Search { scope, .. } => Some(scope),
                _ => None,
            });
            let mut query = json!({
                "ParticipantObjectID": STUDY_ROOT_FIND,
                "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "3",
                "ParticipantObjectIDTypeCode": code("110181", "SOP Class UID"),
                "ParticipantObjectQuery": base64::engine::general_purpose::STANDARD
                    .encode(a.query.unwrap_or("")),
                "ParticipantObjectDetail": [{"type": "QueryEncoding", "value": "UTF-8"}],
            });
            if let Some(p) = a.route.map(|_| a.path) {
                query["ParticipantObjectName"] = p.into();
            }
            objects.push(query);
            if let Some(crate::route::Scope::Study(s) | crate::route::Scope::Series(s, _)) = scope {
                objects.push(study_object(s.as_str(), Vec::new()));
            }
        }
        _ => {
            if let Some(t) = &path_target {
                let (study, series, sop) = t.uids();
                let mut detail = Vec::new();
                if let Some(se) = series {
                    detail.push(json!({"type": "SeriesInstanceUID", "value": se.as_str()}));
                }
                if let Some(i) = sop {
                    detail.push(json!({"type": "SOPInstanceUID", "value": i.as_str()}));
                }
                objects.push(study_object(study.as_str(), detail));
            }
            let named = path_target.as_ref().map(|t| t.study().as_str());
            for s in a.studies.iter().filter(|s| Some(s.as_str()) != named) {
                objects.push(study_object(s, Vec::new()));
            }
        }
    }
    json!({
        "EventIdentification": {
            "EventID": event,
            "EventActionCode": action,
            "EventDateTime": crate::search::feed::rfc3339(a.time),
            "EventOutcomeIndicator": outcome,
            "EventTypeCode": types,
        },
        "ActiveParticipant": [requestor, server],
        "AuditSourceIdentification": {"AuditSourceID": "wado", "AuditEnterpriseSiteID": ae},
        "ParticipantObjectIdentification": objects,
        "wado": {
            "requestId": a.request_id,
            "method": a.method,
            "path": a.path,
            "status": a.status,
        },
    })
}

/// What the record says of one DIMSE operation (the association's peer is the requestor).
#[derive(Debug, Clone)]
pub struct DimseAccess<'a> {
    /// The record's id.
    pub request_id: &'a str,
    /// When (seconds since the Unix epoch).
    pub time: u64,
    /// `C-STORE`, `C-FIND`, `C-GET`, `C-MOVE`.
    pub op: &'a str,
    /// The calling AE title, the called one (the partition) and the peer's address.
    pub peer: &'a crate::dimse::Peer<'a>,
    /// The C-MOVE destination.
    pub destination: Option<&'a str>,
    /// The final status.
    pub status: u16,
    /// The SOP Class UID the request names (the information model of a query).
    pub sop_class: &'a str,
    /// The studies concerned (a stored instance's, a retrieval's).
    pub studies: &'a [String],
    /// The stored instance.
    pub sop: Option<&'a str>,
    /// Their patients.
    pub patients: &'a [String],
    /// A C-FIND's identifier, as received.
    pub query: Option<&'a [u8]>,
}

/// The record of a DIMSE operation (PS3.15 A.5): C-FIND a Query, C-STORE an Instances
/// Transferred (C), C-GET and C-MOVE an Instances Transferred (R); the outcome from the DIMSE
/// status (success and warnings 0, refusals 4, the archive's failures 8).
pub fn dimse_record(a: &DimseAccess<'_>) -> Value {
    let (event, action) = match a.op {
        "C-FIND" => (code("110112", "Query"), "E"),
        "C-STORE" => (code("110104", "DICOM Instances Transferred"), "C"),
        _ => (code("110104", "DICOM Instances Transferred"), "R"),
    };
    let outcome = match a.status {
        0x0000 | 0xB000..=0xBFFF => "0",
        0x0110 | 0xA700..=0xA7FF => "8",
        _ => "4",
    };
    let (requestor_role, server_role) = if action == "R" {
        (
            code("110152", "Destination Role ID"),
            code("110153", "Source Role ID"),
        )
    } else {
        (
            code("110153", "Source Role ID"),
            code("110152", "Destination Role ID"),
        )
    };
    let mut participants = vec![
        json!({
            "UserID": a.peer.calling,
            "AlternativeUserID": format!("AETITLES={}", a.peer.calling),
            "UserIsRequestor": true,
            "NetworkAccessPointID": a.peer.address,
            "NetworkAccessPointTypeCode": "2",
            "RoleIDCode": requestor_role,
        }),
        json!({
            "UserID": a.peer.called,
            "AlternativeUserID": format!("AETITLES={}", a.peer.called),
            "UserIsRequestor": false,
            "RoleIDCode": server_role,
        }),
    ];
    if let Some(d) = a.destination {
        participants[0]["RoleIDCode"] = code("110153", "Source Role ID");
        participants.push(json!({
            "UserID": d,
            "AlternativeUserID": format!("AETITLES={d}"),
            "UserIsRequestor": false,
            "RoleIDCode": code("110152", "Destination Role ID"),
        }));
    }
    let mut objects: Vec<Value> = a.patients.iter().map(|p| patient(p)).collect();
    if let Some(q) = a.query {
        objects.push(json!({
            "ParticipantObjectID": a.sop_class,
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3",
            "ParticipantObjectIDTypeCode": code("110181", "SOP Class UID"),
            "ParticipantObjectQuery": base64::engine::general_purpose::STANDARD.encode(q),
        }));
    }
    for s in a.studies {
        let mut o = json!({
            "ParticipantObjectID": s,
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3",
            "ParticipantObjectIDTypeCode": code("110180", "Study Instance UID"),
        });
        if let Some(sop) = a.sop {
            o["ParticipantObjectDetail"] = json!([{"type": "SOPInstanceUID", "value": sop}]);
        }
        objects.push(o);
    }
    json!({
        "EventIdentification": {
            "EventID": event,
            "EventActionCode": action,
            "EventDateTime": crate::search::feed::rfc3339(a.time),
            "EventOutcomeIndicator": outcome,
            "EventTypeCode": [],
        },
        "ActiveParticipant": participants,
        "AuditSourceIdentification": {"AuditSourceID": "wado", "AuditEnterpriseSiteID": a.peer.called},
        "ParticipantObjectIdentification": objects,
        "wado": {
            "requestId": a.request_id,
            "dimse": a.op,
            "status": format!("{:04X}", a.status),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access<'a>(
        method: &'a str,
        path: &'a str,
        route: Option<&'a Route>,
        status: u16,
    ) -> Access<'a> {
        Access {
            request_id: "0011223344556677",
            time: 1_800_000_000,
            method,
            path,
            query: Some("PatientID=42"),
            client: Some("10.0.0.7"),
            subject: "alice",
            route,
            studies: &[],
            patients: &[],
            status,
        }
    }

    #[test]
    fn events_follow_the_request_and_outcomes_the_status() {
        let cases = [
            (
                "GET",
                "/dcm4chee-arc/aets/A/rs/studies",
                200,
                "110112",
                "E",
                "0",
            ),
            (
                "GET",
                "/dcm4chee-arc/aets/A/rs/studies/1.2.3/metadata",
                200,
                "110104",
                "R",
                "0",
            ),
            (
                "GET",
                "/dcm4chee-arc/aets/A/rs/studies/1.2.3/metadata",
                403,
                "110104",
                "R",
                "4",
            ),
            (
                "POST",
                "/dcm4chee-arc/aets/A/rs/studies",
                200,
                "110104",
                "C",
                "0",
            ),
            (
                "PATCH",
                "/dcm4chee-arc/aets/A/rs/studies/1.2.3",
                204,
                "110103",
                "U",
                "0",
            ),
            (
                "DELETE",
                "/dcm4chee-arc/aets/A/rs/studies/1.2.3",
                500,
                "110105",
                "D",
                "8",
            ),
            (
                "POST",
                "/dcm4chee-arc/aets/A/rs/studies/1.2.3/share",
                201,
                "110113",
                "E",
                "0",
            ),
        ];
        for (method, path, status, id, action, outcome) in cases {
            let route = crate::route::parse_path(path)
                .expect("path")
                .expect("route");
            let r = record(&access(method, path, Some(&route), status));
            let e = &r["EventIdentification"];
            assert_eq!(e["EventID"]["csd-code"], id, "{method} {path}");
            assert_eq!(e["EventActionCode"], action, "{method} {path}");
            assert_eq!(e["EventOutcomeIndicator"], outcome, "{method} {path}");
            assert_eq!(e["EventDateTime"], "2027-01-15T08:00:00Z");
            assert_eq!(r["ActiveParticipant"][0]["UserID"], "alice");
            assert_eq!(
                r["ActiveParticipant"][0]["NetworkAccessPointID"],
                "10.0.0.7"
            );
            assert_eq!(r["wado"]["requestId"], "0011223344556677");
        }
    }

    #[test]
    fn participant_objects_name_the_patient_study_and_query() {
        let path = "/dcm4chee-arc/aets/A/rs/studies/1.2.3/series/4.5/instances/6.7/frames/1";
        let route = crate::route::parse_path(path)
            .expect("path")
            .expect("route");
        let patients = vec!["42".to_owned()];
        let r = record(&Access {
            patients: &patients,
            ..access("GET", path, Some(&route), 200)
        });
        let o = &r["ParticipantObjectIdentification"];
        assert_eq!(o[0]["ParticipantObjectID"], "42");
        assert_eq!(o[0]["ParticipantObjectTypeCode"], "1");
        assert_eq!(o[1]["ParticipantObjectID"], "1.2.3");
        assert_eq!(o[1]["ParticipantObjectIDTypeCode"]["csd-code"], "110180");
        assert_eq!(o[1]["ParticipantObjectDetail"][1]["value"], "6.7");
        let path = "/dcm4chee-arc/aets/A/rs/studies";
        let route = crate::route::parse_path(path)
            .expect("path")
            .expect("route");
        let r = record(&access("GET", path, Some(&route), 200));
        let q = &r["ParticipantObjectIdentification"][0];
        assert_eq!(q["ParticipantObjectIDTypeCode"]["csd-code"], "110181");
        let text = base64::engine::general_purpose::STANDARD
            .decode(q["ParticipantObjectQuery"].as_str().expect("query"))
            .expect("base64");
        assert_eq!(text, b"PatientID=42");
    }
}
