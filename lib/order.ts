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
