// matrix:users: accounts the program creates once each (docs/operations.md: Users).
import { z } from "zod";
import { bool } from "./fields";

/** Localparts the program creates: lower-case letters, digits, '.', '_', '-'. */
export const USER_NAME = /^[a-z0-9._-]{1,64}$/;

const userSchema = z.strictObject({
    /** Matrix localpart: @<name>:<domain>. */
    name: z.string().regex(USER_NAME, {
        error: "expected a localpart of lower-case letters, digits, '.', '_' or '-' (at most 64)",
    }),
    admin: bool().default(false),
});

export const usersSchema = z
    .array(userSchema, { error: 'expected a list such as [{"name": "alice", "admin": true}]' })
    .refine((u) => new Set(u.map((x) => x.name)).size === u.length, { error: "names must be unique" })
    .default([])
    .meta({
        description:
            'Accounts to create once each: `[{"name": "alice", "admin": true}, {"name": "bob"}]` (localparts: lower-case letters, digits, `.` `_` `-`).',
    });

export type User = z.infer<typeof userSchema>;
