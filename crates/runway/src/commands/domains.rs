//! `runway domains add/ls/rm`: custom domains, with the DNS records to create.

use super::{Output, block_on, print_json, print_table, service_arn, text};
use crate::ClientArgs;
use crate::client::Client;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum DomainsCommand {
    /// Associate a domain you own (example.com, app.example.com or *.example.com) with
    /// a service, and print the DNS records to create.
    Add {
        /// The service's name.
        service: String,
        domain: String,
        /// Do not also associate www.<domain> (the default for a domain that is not a
        /// wildcard).
        #[arg(long)]
        no_www: bool,
    },
    /// List a service's custom domains, with the records still to create.
    Ls {
        /// The service's name.
        service: String,
    },
    /// Disassociate a domain from a service (its route and certificate go).
    Rm {
        /// The service's name.
        service: String,
        domain: String,
    },
}

/// The records one domain needs: the validation CNAMEs, and its names pointed at the
/// service (a CNAME to the DNS target; at a zone's apex, where CNAME is not allowed, an
/// ALIAS/ANAME or A records to the router's address).
fn records(domain: &Value, target: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = domain["CertificateValidationRecords"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                text(&r["Type"]),
                text(&r["Name"]),
                text(&r["Value"]),
                text(&r["Status"]),
            ]
        })
        .collect();
    let name = text(&domain["DomainName"]);
    let mut names = vec![name.clone()];
    if domain["EnableWWWSubdomain"].as_bool() == Some(true) {
        names.push(format!("www.{name}"));
    }
    for name in names {
        rows.push(vec![
            "CNAME".into(),
            name,
            format!("{target}."),
            "(routes the domain)".into(),
        ]);
    }
    rows
}

fn print_records(rows: &[Vec<String>]) {
    print_table(&["TYPE", "NAME", "VALUE", "STATUS"], rows);
}

pub fn domains(command: DomainsCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        match command {
            DomainsCommand::Add {
                service,
                domain,
                no_www,
            } => {
                let arn = service_arn(&client, &service).await?;
                let mut input = json!({ "ServiceArn": arn, "DomainName": domain });
                if no_www {
                    input["EnableWWWSubdomain"] = json!(false);
                }
                let out = client.call("AssociateCustomDomain", &input).await?;
                if args.output == Output::Json {
                    return print_json(&out);
                }
                let target = text(&out["DNSTarget"]);
                let domain = &out["CustomDomain"];
                println!(
                    "{} is associated with {service} ({}). Create these records at your DNS \
                     provider:",
                    text(&domain["DomainName"]),
                    text(&domain["Status"])
                );
                print_records(&records(domain, &target));
                println!(
                    "The status turns ACTIVE once the validation records (or the CNAMEs to \
                     {target}) resolve and the certificate is issued: `runway domains ls \
                     {service}`. At a zone's apex, use an ALIAS/ANAME record or A/AAAA \
                     records with runway's public address instead of a CNAME."
                );
                Ok(())
            }
            DomainsCommand::Ls { service } => {
                let arn = service_arn(&client, &service).await?;
                let out = client
                    .call("DescribeCustomDomains", &json!({ "ServiceArn": arn }))
                    .await?;
                if args.output == Output::Json {
                    return print_json(&out);
                }
                let target = text(&out["DNSTarget"]);
                let list: Vec<Value> = out["CustomDomains"].as_array().cloned().unwrap_or_default();
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|d| {
                        vec![
                            text(&d["DomainName"]),
                            text(&d["Status"]),
                            text(&d["EnableWWWSubdomain"]),
                        ]
                    })
                    .collect();
                print_table(&["DOMAIN", "STATUS", "WWW"], &rows);
                let waiting: Vec<Vec<String>> = list
                    .iter()
                    .filter(|d| d["Status"].as_str() != Some("ACTIVE"))
                    .flat_map(|d| records(d, &target))
                    .collect();
                if !waiting.is_empty() {
                    println!("\nRecords to create for the domains that are not ACTIVE:");
                    print_records(&waiting);
                }
                Ok(())
            }
            DomainsCommand::Rm { service, domain } => {
                let arn = service_arn(&client, &service).await?;
                let out = client
                    .call(
                        "DisassociateCustomDomain",
                        &json!({ "ServiceArn": arn, "DomainName": domain }),
                    )
                    .await?;
                if args.output == Output::Json {
                    return print_json(&out);
                }
                println!(
                    "{} is being disassociated from {service}: its route and certificate are \
                     removed.",
                    text(&out["CustomDomain"]["DomainName"])
                );
                Ok(())
            }
        }
    })
}
