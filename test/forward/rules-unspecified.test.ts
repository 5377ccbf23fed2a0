import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DestinationRules } from '../../src/forward/index.js';
import { literalAddress } from '../../src/egress/index.js';

/**
 * Adversarial review, session 35: a connection to the unspecified address (0.0.0.0, ::) reaches
 * this host on Linux (the kernel sends it to the bound source address, else to 127.0.0.1 / ::1),
 * so with `allowPrivate: true` and a rule denying loopback (`cidrs: [127.0.0.0/8]`), naming
 * 0.0.0.0 (or `0`, `::ffff:0.0.0.0`, `::`) reached the loopback services the rule denies: the
 * rules judged 0.0.0.0, not what it reaches. No destination is ever the unspecified address: it
 * is refused whatever the rules say. (Judged here on the rules themselves: a socket-level
 * reproduction would dial 0.0.0.0 against the unfixed code.)
 */
describe('the unspecified address as a destination', () => {
  it('is refused even where loopback is denied only by a cidr rule, in every spelling', () => {
    const rules = new DestinationRules({ allowPrivate: true, defaultAction: 'allow', deny: [{ cidrs: ['127.0.0.0/8', '::1'] }] });
    assert.equal(rules.checkAddress(null, 'x', 80, '127.0.0.1')?.type, 'destination_ip_prohibited', 'the rule itself');
    for (const spelling of ['0.0.0.0', '0', '0.0', '0x0', '00.0.0.0', '::', '0:0:0:0:0:0:0:0', '::ffff:0.0.0.0', '::ffff:0:0', '[::]']) {
      const lit = literalAddress(spelling);
      assert.ok(lit, `${spelling} is an address`);
      const f = rules.checkAddress(null, spelling, 80, lit.address);
      assert.equal(f?.type, 'destination_ip_prohibited', `${spelling} (${lit.address}) was allowed`);
    }
  });

  it('is refused with no rules at all, and an allow rule does not open it', () => {
    const open = new DestinationRules({ allowPrivate: true, defaultAction: 'allow' });
    assert.equal(open.checkAddress(null, 'x', 80, '0.0.0.0')?.type, 'destination_ip_prohibited');
    assert.equal(open.checkAddress(null, 'x', 80, '::')?.type, 'destination_ip_prohibited');
    assert.equal(open.checkAddress(null, 'x', 80, '127.0.0.1'), undefined, 'loopback itself is allowed here');
    const allow = new DestinationRules({ allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['0.0.0.0/0'] }, { cidrs: ['::/0'] }] });
    assert.equal(allow.checkAddress(null, 'x', 80, '0.0.0.0')?.type, 'destination_ip_prohibited');
    assert.equal(allow.checkAddress(null, 'x', 80, '::')?.type, 'destination_ip_prohibited');
    assert.equal(allow.checkAddress(null, 'x', 80, '0.0.0.1'), undefined, 'only the unspecified address itself');
  });
});
