// `npm run self-check`: the deployed homeserver as another server and a client see it (DNS, TLS,
// well-known, federation keys, the client API, Element), and as its operator sees it over SSH
// (units, backups, free disk, Synapse's version). Every check returns results, never prints;
// scripts/self-check.ts reads the stack, prints and sets the exit code.
//
// One file per family of checks: report (results, summary, lines), stack (outputs), network (how
// the checks reach the server), dns, tls, wellKnown, federation, clientApi, element, calls, host
// (over SSH), runner (all of it), units (pure helpers). This file is the module's public API.
export {
    formatResult,
    formatSummary,
    summarize,
    type CheckResult,
    type CheckStatus,
    type SelfCheckReport,
    type Summary,
} from "./report";
export { checkStackOutputs, parseStackOutputs, type SelfCheckTarget, type StackOutputs } from "./stack";
export { schedulePeriodSeconds, uploadSizeBytes } from "./units";
export {
    makeNetwork,
    rawHeaderValues,
    request,
    systemCaCertificates,
    type HttpResponse,
    type Network,
    type SelfCheckOptions,
} from "./network";
export { checkDns } from "./dns";
export { checkLegacyTls, checkTls } from "./tls";
export { checkWellKnown } from "./wellKnown";
export {
    canonicalJson,
    checkFederation,
    discoverFederation,
    verifyServerKeys,
    type FederationEndpoint,
} from "./federation";
export { checkClientApi } from "./clientApi";
export { checkElement, elementSecurityHeaders } from "./element";
export { checkCalls } from "./calls";
export { checkAuth } from "./auth";
export {
    backupTime,
    checkHost,
    evaluateHostReport,
    expectedUnits,
    hostProbe,
    parseHostReport,
    renderHostProbe,
    type Exec,
    type ExpectedUnit,
    type HostProbe,
    type HostRole,
} from "./host";
export { runSelfCheck, startSelfCheck } from "./runner";
