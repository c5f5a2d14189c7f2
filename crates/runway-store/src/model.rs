//! How the model's records are stored: each is keyed by its ARN (operations by id, under
//! their service's ARN) and indexed by name.

use crate::Record;
use runway_model::records::*;

impl Record for ServiceRecord {
    const KIND: &'static str = "service";
    fn key(&self) -> &str {
        &self.arn
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
    /// A deleted service's record is kept (describe, its operations and events) but
    /// nothing that runs is decided from it.
    fn archived(&self) -> bool {
        self.status == ServiceStatus::Deleted
    }
}

impl Record for OperationRecord {
    const KIND: &'static str = "operation";
    fn key(&self) -> &str {
        &self.id
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.service_arn)
    }
}

impl Record for AutoScalingRecord {
    const KIND: &'static str = "autoscaling";
    fn key(&self) -> &str {
        &self.arn
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Record for ConnectionRecord {
    const KIND: &'static str = "connection";
    fn key(&self) -> &str {
        &self.arn
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Record for ObservabilityRecord {
    const KIND: &'static str = "observability";
    fn key(&self) -> &str {
        &self.arn
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Record for TagsRecord {
    const KIND: &'static str = "tags";
    fn key(&self) -> &str {
        &self.arn
    }
}

impl Record for RevisionRecord {
    const KIND: &'static str = "revision";
    fn key(&self) -> &str {
        &self.id
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.service_arn)
    }
}

impl Record for ServiceState {
    const KIND: &'static str = "service_state";
    fn key(&self) -> &str {
        &self.service_arn
    }
}

impl Record for EventRecord {
    const KIND: &'static str = "event";
    fn key(&self) -> &str {
        &self.id
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.service_arn)
    }
}

impl Record for runway_model::domains::DomainRecord {
    const KIND: &'static str = "domain";
    fn key(&self) -> &str {
        &self.domain
    }
    fn parent(&self) -> Option<&str> {
        self.service_arn.as_deref()
    }
}

// Private networks: EC2 resources by id under their VPC (network interfaces under their
// subnet, named by owner), App Runner's connectors and ingress connections by ARN.

use runway_model::network::*;

impl Record for VpcRecord {
    const KIND: &'static str = "vpc";
    fn key(&self) -> &str {
        &self.id
    }
}

impl Record for SubnetRecord {
    const KIND: &'static str = "subnet";
    fn key(&self) -> &str {
        &self.id
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.vpc_id)
    }
}

impl Record for SecurityGroupRecord {
    const KIND: &'static str = "security-group";
    fn key(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.vpc_id)
    }
}

impl Record for VpcEndpointRecord {
    const KIND: &'static str = "vpc-endpoint";
    fn key(&self) -> &str {
        &self.id
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.vpc_id)
    }
}

impl Record for NetworkInterfaceRecord {
    const KIND: &'static str = "network-interface";
    fn key(&self) -> &str {
        &self.id
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.subnet_id)
    }
}

impl Record for VpcConnectorRecord {
    const KIND: &'static str = "vpc-connector";
    fn key(&self) -> &str {
        &self.arn
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Record for IngressConnectionRecord {
    const KIND: &'static str = "vpc-ingress-connection";
    fn key(&self) -> &str {
        &self.arn
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.service_arn)
    }
}
