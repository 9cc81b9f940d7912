// A Pulumi program that creates the server itself (a Hetzner Cloud VM) and a Matrix homeserver on
// it: MatrixHomeserver takes the VM's address as an Output. Run it as its own project
// (examples/hetzner/README.md); tests/unit/homeserverComponent.test.ts runs it under mocks.
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { MatrixHomeserver } from "matrix-pulumi/homeserver";

const config = new pulumi.Config();
const domain = config.require("domain");

const key = new hcloud.SshKey("admin", { publicKey: config.require("sshPublicKey") });
const vm = new hcloud.Server("matrix", {
    image: "debian-12",
    serverType: config.get("serverType") ?? "cx32",
    location: config.get("location") ?? "fsn1",
    sshKeys: [key.id],
});

const homeserver = new MatrixHomeserver("chat", {
    domain,
    machine: { ipv4: vm.ipv4Address, ipv6: vm.ipv6Address },
    sshPrivateKey: config.requireSecret("sshPrivateKey"),
    acme: { email: config.require("acmeEmail") },
    element: { version: "1.12.29", sha256: config.require("elementSha256") },
    // No matrix DNS here: the records to create are an output (or add a DnsRecords zone of your own).
    users: [{ name: "admin", admin: true }],
});

export const serverAddress = vm.ipv4Address;
export const homeserverUrl = homeserver.homeserverUrl;
export const elementUrl = homeserver.elementUrl;
export const dnsRecordsToCreate = homeserver.dnsRecordsToCreate;
export const adminPassword = homeserver.userPasswords;
