// One call through the LiveKit SFU with @livekit/rtc-node (its native library from npm), run as a
// child process by calls.ts: participant A publishes a 440 Hz tone, B subscribes and counts the
// audio frames it receives; A also sends a data packet. Prints one line: RESULT <json>.
//
//   argv[2]: {"url": "wss://…", "jwtA": "…", "jwtB": "…", "frames": 50, "timeoutMs": 30000}
import {
    AudioFrame,
    AudioSource,
    AudioStream,
    dispose,
    LocalAudioTrack,
    Room,
    RoomEvent,
    TrackKind,
    TrackPublishOptions,
    TrackSource,
    type RemoteTrack,
} from "@livekit/rtc-node";

interface CallSpec {
    url: string;
    jwtA: string;
    jwtB: string;
    frames: number;
    timeoutMs: number;
}

export interface CallResult {
    /** Milliseconds from B's connect() to each event. */
    connectB: number;
    subscribed: number;
    firstFrame: number;
    frames: number;
    /** Root mean square of what B heard (a ±8000 sine: about 5657; silence: 0). */
    rms: number;
    data: string;
}

async function call(spec: CallSpec): Promise<CallResult> {
    const a = new Room();
    const b = new Room();
    const source = new AudioSource(48_000, 1);
    let stop = false;
    let start = 0;
    const since = () => Math.round(performance.now() - start);
    try {
        await a.connect(spec.url, spec.jwtA, { autoSubscribe: true, dynacast: false });
        const track = LocalAudioTrack.createAudioTrack("tone", source);
        await a.localParticipant!.publishTrack(
            track,
            new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }),
        );
        void (async () => {
            for (let n = 0; !stop;) {
                const data = new Int16Array(480);
                for (let i = 0; i < 480; i++, n++)
                    data[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * n) / 48_000));
                try {
                    await source.captureFrame(new AudioFrame(data, 48_000, 1, 480));
                } catch {
                    break;
                }
            }
        })();
        const times: Partial<CallResult> = {};
        const data = new Promise<string>((resolve) =>
            b.on(RoomEvent.DataReceived, (payload: Uint8Array) => resolve(new TextDecoder().decode(payload))),
        );
        const heard = new Promise<{ frames: number; rms: number }>((resolve, reject) => {
            b.on(RoomEvent.TrackSubscribed, (remote: RemoteTrack) => {
                if (remote.kind !== TrackKind.KIND_AUDIO) return;
                times.subscribed = since();
                void (async () => {
                    const stream = new AudioStream(remote, { sampleRate: 48_000, numChannels: 1 });
                    const reader = stream.getReader();
                    let frames = 0;
                    let squares = 0;
                    let samples = 0;
                    try {
                        while (frames < spec.frames) {
                            const { value, done } = await reader.read();
                            if (done) break;
                            if (frames++ === 0) times.firstFrame = since();
                            for (const s of value.data) {
                                squares += s * s;
                                samples++;
                            }
                        }
                    } catch (err) {
                        reject(err instanceof Error ? err : new Error(String(err)));
                    }
                    reader.releaseLock();
                    await stream.cancel().catch(() => undefined);
                    resolve({ frames, rms: Math.round(Math.sqrt(squares / Math.max(samples, 1))) });
                })();
            });
        });
        start = performance.now();
        await b.connect(spec.url, spec.jwtB, { autoSubscribe: true, dynacast: false });
        times.connectB = since();
        await a.localParticipant!.publishData(new TextEncoder().encode("ping from A"), { reliable: true });
        const timeout = new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error(`no audio at B within ${spec.timeoutMs} ms`)), spec.timeoutMs).unref(),
        );
        const [audio, text] = await Promise.all([Promise.race([heard, timeout]), Promise.race([data, timeout])]);
        return {
            connectB: times.connectB,
            subscribed: times.subscribed ?? -1,
            firstFrame: times.firstFrame ?? -1,
            ...audio,
            data: text,
        };
    } finally {
        stop = true;
        await Promise.allSettled([a.disconnect(), b.disconnect()]);
        await source.close().catch(() => undefined);
    }
}

call(JSON.parse(process.argv[2]!) as CallSpec)
    .then((r) => {
        // Both rooms are left: the result is final. The native library's teardown (dispose) once
        // aborted here after a successful call ("corrupted double-linked list", exit by SIGABRT),
        // failing a call that had worked: exit without it, the system reclaims what it held.
        process.stdout.write(`RESULT ${JSON.stringify(r)}\n`, () => process.exit(0));
    })
    .catch(async (err: unknown) => {
        console.log(`ERROR ${JSON.stringify(String(err instanceof Error ? err.message : err))}`);
        process.exitCode = 1;
        // Without it the native library keeps the process alive.
        await dispose();
    });
