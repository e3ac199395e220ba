//! The proxy's copy of every Service and Endpoints object, kept by the watch
//! loops' updates, and which Services each update touched (a Service and
//! its Endpoints share a `namespace/name`).

use crate::table::object_key;
use rkube_api::kinds::Kind;
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::{Endpoints, Service};
use rkube_api::Object;
use std::collections::{BTreeSet, HashMap};

/// What a watch loop saw.
#[derive(Debug)]
pub enum Update {
    /// A full list of one kind (at start and after "too old, relist").
    Listed(Kind, Vec<Object>),
    /// Added or modified.
    Upsert(Object),
    Deleted(Object),
}

#[derive(Debug, Default)]
pub struct Cache {
    services: HashMap<String, Service>,
    endpoints: HashMap<String, Endpoints>,
    listed_services: bool,
    listed_endpoints: bool,
}

impl Cache {
    /// Applies an update; returns the keys of the Services it may change.
    pub fn apply(&mut self, update: Update) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        match update {
            Update::Listed(Kind::Service, items) => {
                touched.extend(self.services.keys().cloned());
                self.services = items.into_iter().filter_map(service).collect();
                touched.extend(self.services.keys().cloned());
                self.listed_services = true;
            }
            Update::Listed(Kind::Endpoints, items) => {
                touched.extend(self.endpoints.keys().cloned());
                self.endpoints = items.into_iter().filter_map(endpoints).collect();
                touched.extend(self.endpoints.keys().cloned());
                self.listed_endpoints = true;
            }
            Update::Listed(..) => {}
            Update::Upsert(obj) => match obj.kind {
                Some(Body::Service(s)) => {
                    let key = object_key(s.metadata.as_ref());
                    touched.insert(key.clone());
                    self.services.insert(key, s);
                }
                Some(Body::Endpoints(e)) => {
                    let key = object_key(e.metadata.as_ref());
                    touched.insert(key.clone());
                    self.endpoints.insert(key, e);
                }
                _ => {}
            },
            Update::Deleted(obj) => {
                let key = object_key(obj.metadata());
                match obj.kind() {
                    Some(Kind::Service) => {
                        self.services.remove(&key);
                    }
                    Some(Kind::Endpoints) => {
                        self.endpoints.remove(&key);
                    }
                    _ => return touched,
                }
                touched.insert(key);
            }
        }
        touched
    }

    /// Whether both kinds have been listed once (before that a Service
    /// would look endpoint-less and refuse traffic it should not).
    pub fn synced(&self) -> bool {
        self.listed_services && self.listed_endpoints
    }

    pub fn service(&self, key: &str) -> Option<&Service> {
        self.services.get(key)
    }

    pub fn endpoints(&self, key: &str) -> Option<&Endpoints> {
        self.endpoints.get(key)
    }

    /// Every Service key known.
    pub fn service_keys(&self) -> BTreeSet<String> {
        self.services.keys().cloned().collect()
    }
}

fn service(o: Object) -> Option<(String, Service)> {
    match o.kind {
        Some(Body::Service(s)) => Some((object_key(s.metadata.as_ref()), s)),
        _ => None,
    }
}

fn endpoints(o: Object) -> Option<(String, Endpoints)> {
    match o.kind {
        Some(Body::Endpoints(e)) => Some((object_key(e.metadata.as_ref()), e)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::ObjectMeta;

    fn meta(name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        })
    }

    fn svc(name: &str) -> Object {
        Object::from_body(Body::Service(Service {
            metadata: meta(name),
            ..Default::default()
        }))
    }

    fn eps(name: &str) -> Object {
        Object::from_body(Body::Endpoints(Endpoints {
            metadata: meta(name),
            ..Default::default()
        }))
    }

    #[test]
    fn updates_name_the_services_they_touch() {
        let mut c = Cache::default();
        assert!(!c.synced());
        let t = c.apply(Update::Listed(Kind::Service, vec![svc("a"), svc("b")]));
        assert_eq!(t.len(), 2);
        assert!(!c.synced());
        c.apply(Update::Listed(Kind::Endpoints, vec![eps("a")]));
        assert!(c.synced());
        assert!(c.endpoints("default/a").is_some());

        let t = c.apply(Update::Upsert(eps("b")));
        assert_eq!(t.into_iter().collect::<Vec<_>>(), vec!["default/b"]);
        let t = c.apply(Update::Deleted(svc("a")));
        assert_eq!(t.into_iter().collect::<Vec<_>>(), vec!["default/a"]);
        assert!(c.service("default/a").is_none());

        // A relist names what vanished as well as what is there.
        let t = c.apply(Update::Listed(Kind::Service, vec![svc("c")]));
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            vec!["default/b", "default/c"]
        );
        assert_eq!(c.service_keys().len(), 1);
    }
}
