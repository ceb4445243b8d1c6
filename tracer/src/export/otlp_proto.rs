//! The OTLP trace messages podtrace sends, as prost messages written here
//! (field numbers and types from opentelemetry-proto's
//! `opentelemetry/proto/{common,resource,trace,collector/trace}/v1/*.proto`,
//! v1.x), with their OTLP/JSON form.
//!
//! Why not the `opentelemetry-proto` crate: its message types come only
//! with its tonic generation (`gen-tonic-messages`), which built tonic and
//! pulled in opentelemetry and opentelemetry_sdk (with rand) for a
//! collector that only ever encodes one request type and decodes one small
//! answer. These are the same messages with the fields podtrace fills (and
//! the empty ones a receiver expects in JSON); the tests check them
//! against opentelemetry-proto itself (same protobuf bytes, same JSON).
//!
//! The module tree mirrors opentelemetry-proto's (`common::v1`,
//! `trace::v1::span`, ...) so that code reads the same.

use serde::{Serialize, Serializer};

/// OTLP/JSON: bytes ids as lowercase hex.
fn hex<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let text: String = bytes
        .iter()
        .flat_map(|b| [DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]])
        .map(char::from)
        .collect();
    s.serialize_str(&text)
}

/// OTLP/JSON: 64-bit integers as decimal strings (JavaScript's numbers
/// cannot hold them).
fn u64_string<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

pub mod common {
    pub mod v1 {
        use super::super::is_zero;
        use serde::{ser::SerializeMap as _, Serialize, Serializer};

        #[derive(Clone, PartialEq, prost::Message)]
        pub struct AnyValue {
            #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4")]
            pub value: Option<any_value::Value>,
        }

        pub mod any_value {
            #[derive(Clone, PartialEq, prost::Oneof)]
            pub enum Value {
                #[prost(string, tag = "1")]
                StringValue(String),
                #[prost(bool, tag = "2")]
                BoolValue(bool),
                #[prost(int64, tag = "3")]
                IntValue(i64),
                #[prost(double, tag = "4")]
                DoubleValue(f64),
            }
        }

        /// `{"stringValue": "x"}`, `{"intValue": "3"}` (a string: 64 bits).
        impl Serialize for AnyValue {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use any_value::Value;
                let mut m = s.serialize_map(Some(usize::from(self.value.is_some())))?;
                match &self.value {
                    Some(Value::StringValue(v)) => m.serialize_entry("stringValue", v)?,
                    Some(Value::BoolValue(v)) => m.serialize_entry("boolValue", v)?,
                    Some(Value::IntValue(v)) => m.serialize_entry("intValue", &v.to_string())?,
                    Some(Value::DoubleValue(v)) => m.serialize_entry("doubleValue", v)?,
                    None => {}
                }
                m.end()
            }
        }

        #[derive(Clone, PartialEq, prost::Message, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct KeyValue {
            #[prost(string, tag = "1")]
            pub key: String,
            #[prost(message, optional, tag = "2")]
            pub value: Option<AnyValue>,
            #[prost(int32, tag = "3")]
            #[serde(skip_serializing_if = "is_zero")]
            pub key_strindex: i32,
        }

        #[derive(Clone, PartialEq, prost::Message, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct InstrumentationScope {
            #[prost(string, tag = "1")]
            pub name: String,
            #[prost(string, tag = "2")]
            pub version: String,
            #[prost(message, repeated, tag = "3")]
            pub attributes: Vec<KeyValue>,
            #[prost(uint32, tag = "4")]
            pub dropped_attributes_count: u32,
        }

        /// Never filled by podtrace; in the JSON as an empty list, as
        /// opentelemetry-proto writes it.
        #[derive(Clone, PartialEq, prost::Message, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct EntityRef {
            #[prost(string, tag = "1")]
            pub schema_url: String,
            #[prost(string, tag = "2")]
            pub r#type: String,
            #[prost(string, repeated, tag = "3")]
            pub id_keys: Vec<String>,
            #[prost(string, repeated, tag = "4")]
            pub description_keys: Vec<String>,
        }
    }
}

pub mod resource {
    pub mod v1 {
        use super::super::{common::v1::EntityRef, common::v1::KeyValue, Serialize};

        #[derive(Clone, PartialEq, prost::Message, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Resource {
            #[prost(message, repeated, tag = "1")]
            pub attributes: Vec<KeyValue>,
            #[prost(uint32, tag = "2")]
            pub dropped_attributes_count: u32,
            #[prost(message, repeated, tag = "3")]
            pub entity_refs: Vec<EntityRef>,
        }
    }
}

pub mod trace {
    pub mod v1 {
        use super::super::{
            common::v1::{InstrumentationScope, KeyValue},
            hex,
            resource::v1::Resource,
            u64_string, Serialize,
        };

        #[derive(Clone, PartialEq, prost::Message, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct ResourceSpans {
            #[prost(message, optional, tag = "1")]
            pub resource: Option<Resource>,
            #[prost(message, repeated, tag = "2")]
            pub scope_spans: Vec<ScopeSpans>,
            #[prost(string, tag = "3")]
            pub schema_url: String,
        }

        #[derive(Clone, PartialEq, prost::Message, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct ScopeSpans {
            #[prost(message, optional, tag = "1")]
            pub scope: Option<InstrumentationScope>,
            #[prost(message, repeated, tag = "2")]
            pub spans: Vec<Span>,
            #[prost(string, tag = "3")]
            pub schema_url: String,
        }

        #[derive(Clone, PartialEq, prost::Message, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Span {
            #[prost(bytes = "vec", tag = "1")]
            #[serde(serialize_with = "hex")]
            pub trace_id: Vec<u8>,
            #[prost(bytes = "vec", tag = "2")]
            #[serde(serialize_with = "hex")]
            pub span_id: Vec<u8>,
            #[prost(string, tag = "3")]
            pub trace_state: String,
            #[prost(bytes = "vec", tag = "4")]
            #[serde(serialize_with = "hex")]
            pub parent_span_id: Vec<u8>,
            #[prost(fixed32, tag = "16")]
            pub flags: u32,
            #[prost(string, tag = "5")]
            pub name: String,
            #[prost(enumeration = "span::SpanKind", tag = "6")]
            pub kind: i32,
            #[prost(fixed64, tag = "7")]
            #[serde(serialize_with = "u64_string")]
            pub start_time_unix_nano: u64,
            #[prost(fixed64, tag = "8")]
            #[serde(serialize_with = "u64_string")]
            pub end_time_unix_nano: u64,
            #[prost(message, repeated, tag = "9")]
            pub attributes: Vec<KeyValue>,
            #[prost(uint32, tag = "10")]
            pub dropped_attributes_count: u32,
            #[prost(message, repeated, tag = "11")]
            pub events: Vec<span::Event>,
            #[prost(uint32, tag = "12")]
            pub dropped_events_count: u32,
            #[prost(message, repeated, tag = "13")]
            pub links: Vec<span::Link>,
            #[prost(uint32, tag = "14")]
            pub dropped_links_count: u32,
            #[prost(message, optional, tag = "15")]
            pub status: Option<Status>,
        }

        pub mod span {
            use super::super::super::{common::v1::KeyValue, hex, u64_string, Serialize};

            #[derive(Clone, PartialEq, prost::Message, Serialize)]
            #[serde(rename_all = "camelCase")]
            pub struct Event {
                #[prost(fixed64, tag = "1")]
                #[serde(serialize_with = "u64_string")]
                pub time_unix_nano: u64,
                #[prost(string, tag = "2")]
                pub name: String,
                #[prost(message, repeated, tag = "3")]
                pub attributes: Vec<KeyValue>,
                #[prost(uint32, tag = "4")]
                pub dropped_attributes_count: u32,
            }

            /// Never filled by podtrace (an empty list in the JSON).
            #[derive(Clone, PartialEq, prost::Message, Serialize)]
            #[serde(rename_all = "camelCase")]
            pub struct Link {
                #[prost(bytes = "vec", tag = "1")]
                #[serde(serialize_with = "hex")]
                pub trace_id: Vec<u8>,
                #[prost(bytes = "vec", tag = "2")]
                #[serde(serialize_with = "hex")]
                pub span_id: Vec<u8>,
                #[prost(string, tag = "3")]
                pub trace_state: String,
                #[prost(message, repeated, tag = "4")]
                pub attributes: Vec<KeyValue>,
                #[prost(uint32, tag = "5")]
                pub dropped_attributes_count: u32,
                #[prost(fixed32, tag = "6")]
                pub flags: u32,
            }

            #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
            #[repr(i32)]
            pub enum SpanKind {
                Unspecified = 0,
                Internal = 1,
                Server = 2,
                Client = 3,
                Producer = 4,
                Consumer = 5,
            }
        }

        #[derive(Clone, PartialEq, prost::Message, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Status {
            #[prost(string, tag = "2")]
            pub message: String,
            #[prost(enumeration = "status::StatusCode", tag = "3")]
            pub code: i32,
        }

        pub mod status {
            #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
            #[repr(i32)]
            pub enum StatusCode {
                Unset = 0,
                Ok = 1,
                Error = 2,
            }
        }
    }
}

pub mod collector {
    pub mod trace {
        pub mod v1 {
            use super::super::super::{trace::v1::ResourceSpans, Serialize};

            #[derive(Clone, PartialEq, prost::Message, Serialize)]
            #[serde(rename_all = "camelCase")]
            pub struct ExportTraceServiceRequest {
                #[prost(message, repeated, tag = "1")]
                pub resource_spans: Vec<ResourceSpans>,
            }

            #[derive(Clone, PartialEq, prost::Message)]
            pub struct ExportTraceServiceResponse {
                #[prost(message, optional, tag = "1")]
                pub partial_success: Option<ExportTracePartialSuccess>,
            }

            #[derive(Clone, PartialEq, prost::Message)]
            pub struct ExportTracePartialSuccess {
                #[prost(int64, tag = "1")]
                pub rejected_spans: i64,
                #[prost(string, tag = "2")]
                pub error_message: String,
            }
        }
    }
}
