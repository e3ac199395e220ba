//! Manifest decoding, defaulting and validation (rkube-api's `manifest`,
//! `kinds`, `defaults`, `validation`) on arbitrary text.
//!
//! Invariants: nothing panics; an object the strict decoder accepts
//! re-encodes (as kubectl's `-o json` and `-o yaml`) to text that decodes to
//! the same object up to empty values (printing the decoded text again gives
//! the same text; YAML and JSON agree); defaulting is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkube_api::{defaults, manifest, validation};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = manifest::decode(text, "fuzz") else {
        return;
    };
    for obj in objects {
        // Printing prunes empty values (as kubectl does), so an empty but
        // present message (`template: {metadata: }`) prints as absent: the
        // printed form, not the object, is the fixed point.
        let json = manifest::to_json_string(&obj);
        let back = manifest::decode(&json, "json")
            .unwrap_or_else(|e| panic!("re-encoded JSON does not decode: {e}\n{json}"));
        assert_eq!(back.len(), 1, "{json}");
        assert_eq!(
            manifest::to_json_string(&back[0]),
            json,
            "JSON round trip changed the object"
        );
        let yaml = manifest::to_yaml_string(&obj);
        let back_yaml = manifest::decode(&yaml, "yaml")
            .unwrap_or_else(|e| panic!("re-encoded YAML does not decode: {e}\n{yaml}"));
        assert_eq!(back_yaml, back, "YAML and JSON decode differently\n{yaml}");

        let mut defaulted = obj.clone();
        defaulted.set_type_meta();
        defaults::apply_defaults(&mut defaulted);
        let mut again = defaulted.clone();
        defaults::apply_defaults(&mut again);
        assert_eq!(again, defaulted, "defaulting is not idempotent");
        let _ = validation::validate(&obj);
        let _ = validation::validate(&defaulted);
        let _ = validation::validate_update(&obj, &defaulted);
        let _ = validation::validate_update(&defaulted, &obj);
    }
});
