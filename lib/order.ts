// How one resource waits for another without taking a value that a preview cannot know.
import * as pulumi from "@pulumi/pulumi";

/**
 * `value`, once `step` has been applied. The value stays known in a preview whatever `step` does
 * (it comes from the step's URN, not from its output), so what takes it shows as changing only
 * when the value itself changes: the way one step orders another (STYLE 13).
 */
export function after<T>(step: pulumi.Resource | pulumi.Resource[], value: pulumi.Input<T>): pulumi.Output<T> {
    const steps = Array.isArray(step) ? step : [step];
    return pulumi.all([...steps.map((s) => s.urn), value]).apply((all) => all[all.length - 1] as T);
}

/** A value a caller gives either plainly (a stack's own config) or as another resource's Output. */
export type PlainOrOutput<T> = T | pulumi.Output<T>;

/**
 * `f(value)`: at once when `value` is plain, through `apply` when it is an Output (an address another
 * resource of the caller's program gives). A plain value gives exactly what `f` returns, so a stack
 * that passes plain values sees the same inputs either way.
 */
export function mapInput<T, U>(value: PlainOrOutput<T>, f: (v: T) => PlainOrOutput<U>): PlainOrOutput<U> {
    if (pulumi.Output.isInstance(value)) {
        return value.apply((v) => f(v) as pulumi.Input<U>) as unknown as pulumi.Output<U>;
    }
    return f(value);
}
