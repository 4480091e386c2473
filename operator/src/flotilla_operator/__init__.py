"""The Flotilla operator: a Microservice resource becomes a running, monitored, reachable service."""

GROUP = "flotilla.dev"
VERSION = "v1alpha1"
PLURAL = "microservices"
KIND = "Microservice"
FIELD_MANAGER = "flotilla-operator"
MANAGED_BY = "flotilla-operator"
