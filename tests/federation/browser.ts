// Element in Debian's Chromium, driven by playwright-core (no browser download: the system
// binary). The test CA is trusted the way a user's browser trusts a public one: it is added to
// the NSS store of the browser's $HOME with certutil. Certificate errors are never ignored —
// Chromium would then refuse Element's service worker, which authenticated media needs.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";

export interface ElementSession {
    /** Whether the welcome page shows "Create Account" (a visible link to #/register). */
    registrationOffered(): Promise<boolean>;
    /** Signs in through Element's own login form and waits for the app. */
    signIn(user: string, password: string): Promise<void>;
    /**
     * With MAS (matrix:auth): Element's "Continue" to MAS, MAS's login and consent pages, back to
     * Element; waits for the app. Returns the MAS pages seen, by path.
     */
    signInThroughMas(user: string, password: string): Promise<string[]>;
    /**
     * With MAS and registration on: the welcome page's "Create Account", Element's "Continue" to
     * MAS, MAS's registration pages (username, password, display name) and its consent page, back
     * to Element signed in as the new account. Returns the MAS pages seen, by path.
     */
    registerThroughMas(user: string, password: string, displayName: string): Promise<string[]>;
    /** Opens the room from the room list and sends `text` through the composer; resolves once Element shows it. */
    send(roomName: string, text: string): Promise<void>;
    /** How many service workers the page has registered. */
    serviceWorkers(): Promise<number>;
    screenshot(file: string): Promise<string>;
    close(): Promise<void>;
}

export interface ElementOptions {
    /** The session folder: the browser's $HOME and screenshots go there. */
    run: string;
    elementUrl: string;
    /** The CA the test certificates chain to, trusted through the NSS store. */
    caPem: string;
    /** Host name → address (the test DNS is not the machine's). */
    hosts: Record<string, string>;
}

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** A $HOME whose NSS store trusts `caPem` for TLS servers, as `certutil` sets it up. */
function trustingHome(dir: string, caPem: string): string {
    rmSync(dir, { recursive: true, force: true });
    const nssdb = path.join(dir, ".pki/nssdb");
    mkdirSync(nssdb, { recursive: true });
    const ca = path.join(dir, "test-ca.pem");
    writeFileSync(ca, caPem);
    for (const args of [
        ["-N", "-d", `sql:${nssdb}`, "--empty-password"],
        ["-A", "-d", `sql:${nssdb}`, "-n", "matrix-pulumi test CA", "-t", "C,,", "-i", ca],
    ]) {
        const r = spawnSync("certutil", args, { encoding: "utf8" });
        if (r.status !== 0) throw new Error(`certutil ${args.join(" ")}: ${r.stderr}`);
    }
    return dir;
}

export async function openElement(o: ElementOptions): Promise<ElementSession> {
    const home = trustingHome(path.join(o.run, "chromium-home"), o.caPem);
    const rules = Object.entries(o.hosts)
        .map(([name, address]) => `MAP ${name} ${address}`)
        .join(", ");
    const browser: Browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        env: { ...process.env, HOME: home },
        args: [
            // Root in a container: Chromium's own sandbox needs user namespaces it may not get.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            // This machine's network is closed: no background requests to Google.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            `--host-resolver-rules=${rules}, EXCLUDE localhost`,
        ],
    });
    const page: Page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
        if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    const fail = async (what: string, err: unknown): Promise<never> => {
        const shot = path.join(o.run, `element-failed-${Date.now()}.png`);
        await page.screenshot({ path: shot }).catch(() => undefined);
        throw new Error(
            `${what}: ${err instanceof Error ? err.message : String(err)}\n(screenshot ${shot}; page errors:\n${problems.slice(-15).join("\n")})`,
        );
    };

    // The test machine's network changes under the browser whenever another suite boots or stops
    // a host (a veth comes or goes); Chromium then aborts its requests in flight with
    // net::ERR_NETWORK_CHANGED, and Element, missing a chunk, fails to start. That is the test
    // machine, not the deployment: a step that failed while Chromium saw such a change runs once
    // more, from a fresh load. Any other failure fails at once.
    const step = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
        for (let attempt = 1; ; attempt++) {
            const seen = problems.length;
            try {
                return await run();
            } catch (err) {
                const changed = problems.slice(seen).some((p) => p.includes("ERR_NETWORK_CHANGED"));
                if (!changed || attempt === 2) return fail(what, err);
                console.log(`${what}: the test machine's network changed under Chromium; once more`);
                await page.reload().catch(() => undefined);
            }
        }
    };
    return {
        async registrationOffered() {
            return step("welcome page", async () => {
                await page.goto(`${o.elementUrl}/#/welcome`);
                // The welcome page's sign-in link shows once the app has loaded its config.
                await page.locator('a[href="#/login"]').first().waitFor({ state: "visible", timeout: 60_000 });
                return page.locator('a[href="#/register"]').first().isVisible();
            });
        },
        async signIn(user, password) {
            const signedIn = page.locator(".mx_UserMenu, .mx_LeftPanel").first();
            return step("sign in", async () => {
                await page.goto(`${o.elementUrl}/#/login`);
                const form = page.locator("#mx_LoginForm_username");
                // A second attempt may find the session the first one started.
                await form.or(signedIn).first().waitFor({ state: "visible", timeout: 60_000 });
                if (await form.isVisible()) {
                    await form.fill(user);
                    await page.locator("#mx_LoginForm_password").fill(password);
                    await page.locator("#mx_LoginForm_password").press("Enter");
                }
                // Signed in: the app's main view (left panel with the user menu).
                await signedIn.waitFor({ state: "visible", timeout: 120_000 });
            });
        },
        async signInThroughMas(user, password) {
            const signedIn = page.locator(".mx_UserMenu, .mx_LeftPanel").first();
            const seen: string[] = [];
            await step("sign in through MAS", async () => {
                await page.goto(`${o.elementUrl}/#/login`);
                // Element reads auth_metadata and offers MAS instead of its own password form.
                const next = page.getByRole("button", { name: "Continue" });
                await next.or(signedIn).first().waitFor({ state: "visible", timeout: 60_000 });
                if (await signedIn.isVisible()) return;
                await next.click();
                const username = page.locator('input[name="username"]');
                await username.waitFor({ state: "visible", timeout: 60_000 });
                seen.push(new URL(page.url()).pathname);
                // MAS's consent page (Element registered itself as a client), then back to Element.
                const consent = page.getByRole("button", { name: "Continue" });
                // MAS allows three login attempts at once from one address, then one every 20 s:
                // its login page coming back (rate-limited) is submitted again a little later.
                for (let attempt = 1; ; attempt++) {
                    await username.fill(user);
                    await page.locator('input[name="password"]').fill(password);
                    await page.locator('button[type="submit"]').first().click();
                    await page.waitForLoadState();
                    await consent.or(signedIn).or(username).first().waitFor({ state: "visible", timeout: 60_000 });
                    if (!(await username.isVisible()) || attempt === 6) break;
                    await page.waitForTimeout(20_000);
                }
                await consent.or(signedIn).first().waitFor({ state: "visible", timeout: 60_000 });
                if (!(await signedIn.isVisible())) {
                    seen.push(new URL(page.url()).pathname);
                    await consent.click();
                }
                await signedIn.waitFor({ state: "visible", timeout: 120_000 });
            });
            return seen;
        },
        async registerThroughMas(user, password, displayName) {
            const signedIn = page.locator(".mx_UserMenu, .mx_LeftPanel").first();
            const seen: string[] = [];
            const here = () => new URL(page.url()).pathname;
            const submit = async (what: string, from: string) => {
                await page.locator('button[type="submit"]').first().click();
                // The same page again is MAS refusing the form: its message says why.
                await page
                    .waitForURL((u) => u.pathname !== from, { timeout: 60_000 })
                    .catch(async () => {
                        const said = await page
                            .locator(".text-critical:visible, .cpd-form-error-message:visible")
                            .allInnerTexts();
                        throw new Error(`MAS kept the ${what} form at ${from}: ${said.join("; ") || "(no message)"}`);
                    });
            };
            await step("create an account through MAS", async () => {
                seen.length = 0;
                await page.goto(`${o.elementUrl}/#/welcome`);
                await page.locator('a[href="#/register"]').first().click({ timeout: 60_000 });
                // Element reads auth_metadata (prompt=create offered) and hands registration to MAS.
                await page.getByRole("button", { name: "Continue" }).click({ timeout: 60_000 });
                const username = page.locator('input[name="username"]');
                const first = page.locator('input[name="password"]');
                const confirm = page.locator('input[name="password_confirm"]');
                await username.waitFor({ state: "visible", timeout: 60_000 });
                seen.push(here());
                // MAS asks for the username alone first when it offers more than one way to
                // register (e-mail, upstream providers); with passwords only, the one form has both.
                if (!(await first.isVisible())) {
                    await username.fill(user);
                    await submit("username", here());
                    await first.waitFor({ state: "visible", timeout: 60_000 });
                    seen.push(here());
                }
                // MAS's script takes the fields over once it has loaded (its username check and
                // strength meter): type once it has, and check what the fields hold.
                await page.waitForLoadState("networkidle");
                for (let i = 0; i < 10; i++) {
                    await username.fill(user);
                    await first.fill(password);
                    await confirm.fill(password);
                    await page.waitForTimeout(500);
                    const held = [await username.inputValue(), await first.inputValue(), await confirm.inputValue()];
                    if (held.join("\n") === [user, password, password].join("\n")) break;
                }
                await submit("password", here());
                const name = page.locator('input[name="display_name"]');
                const consent = page.getByRole("button", { name: "Continue" });
                await name.or(consent).or(signedIn).first().waitFor({ state: "visible", timeout: 60_000 });
                if (await name.isVisible()) {
                    seen.push(here());
                    await name.fill(displayName);
                    await submit("display name", here());
                }
                await consent.or(signedIn).first().waitFor({ state: "visible", timeout: 60_000 });
                if (!(await signedIn.isVisible())) {
                    seen.push(here());
                    await consent.click();
                }
                await signedIn.waitFor({ state: "visible", timeout: 120_000 });
            });
            return seen;
        },
        async send(roomName, text) {
            return step("send a message", async () => {
                // As a user does: the room in the list (a URL typed in would reload the app).
                await page
                    .getByRole("option", { name: new RegExp(`^${roomName}`) })
                    .or(page.getByText(roomName, { exact: true }))
                    .first()
                    .click({ timeout: 60_000 });
                const composer = page.locator('.mx_BasicMessageComposer_input[contenteditable="true"]').first();
                await composer.waitFor({ state: "visible", timeout: 60_000 });
                await composer.click();
                await page.keyboard.type(text);
                await page.keyboard.press("Enter");
                await page
                    .locator(".mx_EventTile_body", { hasText: text })
                    .first()
                    .waitFor({ state: "visible", timeout: 60_000 });
            });
        },
        async serviceWorkers() {
            // A browser global, not in this project's (Node) typings.
            const nav = "navigator";
            return page.evaluate(
                async (n) =>
                    (
                        await (
                            globalThis as unknown as Record<
                                string,
                                { serviceWorker: { getRegistrations(): Promise<unknown[]> } }
                            >
                        )[n]!.serviceWorker.getRegistrations()
                    ).length,
                nav,
            );
        },
        async screenshot(file) {
            await page.screenshot({ path: file });
            return file;
        },
        async close() {
            await browser.close();
        },
    };
}
