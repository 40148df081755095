"""SPF (RFC 7208) check_host() against records served by dnsmasq, through
tests/tools/spf_tool (src/core/spf.c on src/core/dns.c, the sanitizer
build): every mechanism and qualifier, modifiers, macros, the DNS limits,
errors, and the Received-SPF header field.  One dnsmasq serves every name
of the module; each test asks one or two questions."""
import os
import re
import socket
import subprocess
import tempfile
import time
import shutil

import pytest

import selortest

SPF_TOOL = os.path.join(os.path.dirname(selortest.SELOR), "tools", "spf_tool")

TXT = {
    "ip4.test": ["v=spf1 ip4:192.0.2.0/24 -all"],
    "ip4host.test": ["v=spf1 ip4:192.0.2.7 -all"],
    "ip6.test": ["v=spf1 ip6:2001:db8:1::/48 ~all"],
    "a.test": ["v=spf1 a a:other.a.test/24 -all"],
    "dual.test": ["v=spf1 a:dual-host.test/24//64 -all"],
    "aaaa.test": ["v=spf1 a -all"],
    "mx.test": ["v=spf1 mx -all"],
    "mxcidr.test": ["v=spf1 mx:mx.test/30 -all"],
    "manymx.test": ["v=spf1 mx -all"],
    "inc.test": ["v=spf1 include:ip4.test ?all"],
    "incnone.test": ["v=spf1 include:nothing.test -all"],
    "redir.test": ["v=spf1 redirect=ip4.test"],
    "redirall.test": ["v=spf1 -all redirect=pass.test"],
    "redirnone.test": ["v=spf1 redirect=nothing.test"],
    "pass.test": ["v=spf1 +all"],
    "fail.test": ["v=spf1 -all"],
    "softfail.test": ["v=spf1 ~all"],
    "neutral.test": ["v=spf1 ?all"],
    "empty.test": ["v=spf1"],
    "ex.test": ["v=spf1 exists:%{ir}.%{l}._spf.%{d} -all"],
    "deep.sub.d2.test": ["v=spf1 exists:ok.%{d2} -all"],
    "delim.test": ["v=spf1 exists:%{l2r-}.delim.test -all"],
    "ptr.test": ["v=spf1 ptr -all"],
    "ptr6.test": ["v=spf1 ptr:mx.test -all"],
    "exp.test": ["v=spf1 ip4:192.0.2.0/24 -all exp=why.exp.test"],
    "why.exp.test": ["%{i} is not one of %{d}'s designated mail servers, "
                     "see http://%{d}/why.html?s=%{S}&v=%{v}"],
    "exp6.test": ["v=spf1 -all exp=%{l}.why6.test"],
    "bob.why6.test": ["%{c} %{i} %{r} %{v} t=%{t} %{p} %%%_%-"],
    "pmech.test": ["v=spf1 exists:%{p}.pm.test -all"],
    "pexp.test": ["v=spf1 -all exp=why.pexp.test"],
    "why.pexp.test": ["p=%{p} P=%{P}"],
    "incexp.test": ["v=spf1 include:exp.test -all exp=why.incexp.test"],
    "why.incexp.test": ["outer %{d}"],
    "ten.test": ["v=spf1 " + " ".join("a:n%d.many.test" % i for i in range(1, 11)) +
                 " -all"],
    "eleven.test": ["v=spf1 " + " ".join("a:n%d.many.test" % i for i in range(1, 12)) +
                    " -all"],
    "incloop.test": ["v=spf1 include:incloop.test -all"],
    "void2.test": ["v=spf1 a:v1.void.test a:v2.void.test ip4:192.0.2.0/24 -all"],
    "void3.test": ["v=spf1 a:v1.void.test a:v2.void.test a:v3.void.test "
                   "ip4:192.0.2.0/24 -all"],
    "other.test": ["google-site-verification=abc", "v=spf1-not-this -all"],
    "two.test": ["v=spf1 -all", "v=spf1 +all"],
    "bad-cidr.test": ["v=spf1 ip4:192.0.2.0/33 -all"],
    "bad-mech.test": ["v=spf1 foo:bar.test -all"],
    "bad-late.test": ["v=spf1 ip4:192.0.2.0/24 a:no-top-label -all"],
    "bad-macro.test": ["v=spf1 exists:%{x}.bad.test -all"],
    "unknown-mod.test": ["v=spf1 foo=bar.%{d} ip4:192.0.2.0/24 -all"],
    "case.test": ["V=SPF1 IP4:192.0.2.0/24 -ALL"],
    "strings.test": [("v=spf1 ip4:192.0.", "2.0/24 -all")],
    "long.test": ["v=spf1 " + " ".join("ip4:10.0.%d.1" % i for i in range(40)) + " -all"],
    # over UDP's 512 bytes (c-ares asks again over TCP), and over
    # SPF_RECORD_MAX (4096): a permerror
    "big.test": ["v=spf1 " + " ".join("ip4:10.1.%d.%d" % (i // 200, i % 200)
                                      for i in range(220)) + " -all"],
    "huge.test": ["v=spf1 " + " ".join("ip4:10.2.%d.%d" % (i // 200, i % 200)
                                       for i in range(320)) + " -all"],
    "helo.test": ["v=spf1 exists:%{l}.%{d} -all"],
    "tempinc.test": ["v=spf1 include:spf.example.invalid -all"],
}
HOSTS = {
    "a.test": "198.51.100.10",
    "other.a.test": "203.0.113.1",
    "dual-host.test": ["10.9.8.1", "2001:db8:9::1"],
    "aaaa.test": ["192.0.2.200", "2001:db8:aa::1"],
    "mail.mx.test": "192.0.2.25",
    "mail2.mx.test": ["192.0.2.40", "2001:db8:25::25"],
    "4.3.2.1.alice._spf.ex.test": "127.0.0.2",
    "ok.d2.test": "127.0.0.2",
    "c.b.delim.test": "127.0.0.2",
    "host.ptr.test": "192.0.2.99",
    "host.elsewhere.test": "192.0.2.98",
    "host.ptr.test.pm.test": "127.0.0.2",
    "a.elsewhere.test": "192.0.2.95",
    "x.pexp.test": "192.0.2.95",
    "y.pexp.test": "192.0.2.95",
    "postmaster.helo.test": "127.0.0.2",
}
HOSTS.update({"n%d.many.test" % i: "10.0.0.%d" % i for i in range(1, 12)})
MX = {
    "mx.test": [(10, "mail.mx.test"), (20, "mail2.mx.test")],
    "manymx.test": [(i, "m%d.manymx.test" % i) for i in range(11)],
}
PTRS = {
    "192.0.2.97": "fake.ptr.test",          # no address comes back
    "192.0.2.95": ["a.elsewhere.test", "fake.pexp.test", "x.pexp.test", "y.pexp.test",
                   "pexp.test"],
    "2001:db8:25::25": "mail2.mx.test",
}


@pytest.fixture(scope="module")
def dns():
    base = tempfile.mkdtemp(prefix="selor-spf-")
    d = selortest.Dns(base, mx=MX, hosts=HOSTS, ptrs=PTRS, txt=TXT)
    yield d
    d.stop()
    shutil.rmtree(base, ignore_errors=True)


def run(server, ip, sender, helo="client.test", extra=(), timeout=30):
    p = subprocess.run([SPF_TOOL, "--dns", server, "--ip", ip, "--helo", helo,
                        "--sender", sender, "--receiver", "mx.receiver.test"] + list(extra),
                       capture_output=True, timeout=timeout)
    assert p.returncode == 0 and p.stderr == b"", (p.returncode, p.stderr)
    return p.stdout.decode()    # CRLF kept: the header's line ends


def spf(dns, ip, sender, helo="client.test"):
    """(result, explanation) of check_host for the client."""
    out = run(dns.server, ip, sender, helo)
    result, _, expl = out.rstrip("\n").partition(" ")
    return result, expl


def result(dns, ip, sender, helo="client.test"):
    return spf(dns, ip, sender, helo)[0]


def test_ip4_cidr(dns):
    assert result(dns, "192.0.2.77", "a@ip4.test") == "pass"
    assert result(dns, "192.0.3.1", "a@ip4.test") == "fail"
    assert result(dns, "192.0.2.7", "a@ip4host.test") == "pass"
    assert result(dns, "192.0.2.8", "a@ip4host.test") == "fail"


def test_ip6_cidr_and_an_ipv6_client(dns):
    assert result(dns, "2001:db8:1:2::5", "a@ip6.test") == "pass"
    assert result(dns, "2001:db8:2::1", "a@ip6.test") == "softfail"
    # an IPv6 client never matches ip4, nor an IPv4 one ip6
    assert result(dns, "2001:db8:1::1", "a@ip4.test") == "fail"
    assert result(dns, "192.0.2.1", "a@ip6.test") == "softfail"


def test_ipv4_mapped_client_is_checked_as_ipv4(dns):
    assert result(dns, "::ffff:192.0.2.9", "a@ip4.test") == "pass"


def test_a_with_and_without_domain_and_cidr(dns):
    assert result(dns, "198.51.100.10", "a@a.test") == "pass"
    assert result(dns, "203.0.113.200", "a@a.test") == "pass"    # other.a.test/24
    assert result(dns, "198.51.100.11", "a@a.test") == "fail"


def test_a_dual_cidr(dns):
    assert result(dns, "10.9.8.200", "a@dual.test") == "pass"
    assert result(dns, "10.9.9.1", "a@dual.test") == "fail"
    assert result(dns, "2001:db8:9::ffff", "a@dual.test") == "pass"
    assert result(dns, "2001:db8:9:1::1", "a@dual.test") == "fail"


def test_a_asks_the_clients_family(dns):
    assert result(dns, "2001:db8:aa::1", "a@aaaa.test") == "pass"
    assert result(dns, "192.0.2.200", "a@aaaa.test") == "pass"
    assert result(dns, "2001:db8:aa::2", "a@aaaa.test") == "fail"


def test_mx(dns):
    assert result(dns, "192.0.2.25", "a@mx.test") == "pass"
    assert result(dns, "192.0.2.40", "a@mx.test") == "pass"     # second MX
    assert result(dns, "2001:db8:25::25", "a@mx.test") == "pass"
    assert result(dns, "192.0.2.26", "a@mx.test") == "fail"
    assert result(dns, "192.0.2.26", "a@mxcidr.test") == "pass"   # /30
    assert result(dns, "192.0.2.28", "a@mxcidr.test") == "fail"


def test_more_than_ten_mx_names_is_permerror(dns):
    assert result(dns, "192.0.2.1", "a@manymx.test") == "permerror"


def test_include_pass_and_include_of_a_fail(dns):
    assert result(dns, "192.0.2.5", "a@inc.test") == "pass"
    # ip4.test fails the client: the include does not match, ?all does
    assert result(dns, "10.1.1.1", "a@inc.test") == "neutral"


def test_include_of_a_domain_without_record_is_permerror(dns):
    assert result(dns, "10.1.1.1", "a@incnone.test") == "permerror"


def test_redirect(dns):
    assert result(dns, "192.0.2.5", "a@redir.test") == "pass"
    assert result(dns, "10.1.1.1", "a@redir.test") == "fail"
    # all matches first: redirect is not followed
    assert result(dns, "10.1.1.1", "a@redirall.test") == "fail"
    # redirect to a domain without record
    assert result(dns, "10.1.1.1", "a@redirnone.test") == "permerror"


def test_all_qualifiers(dns):
    for dom, res in (("pass", "pass"), ("fail", "fail"), ("softfail", "softfail"),
                     ("neutral", "neutral"), ("empty", "neutral")):
        assert result(dns, "10.1.1.1", "a@%s.test" % dom) == res, dom


def test_exists_with_ir_l_d_macros(dns):
    assert result(dns, "1.2.3.4", "alice@ex.test") == "pass"
    assert result(dns, "1.2.3.4", "bob@ex.test") == "fail"
    assert result(dns, "1.2.3.5", "alice@ex.test") == "fail"


def test_d2_macro(dns):
    assert result(dns, "10.1.1.1", "x@deep.sub.d2.test") == "pass"


def test_delimiters_and_reverse(dns):
    # %{l2r-} of "b-c-z": parts b, c, z; reversed z, c, b; the right two:
    # "c.b" (RFC 7208 7.3: reverse, then keep the right-hand parts)
    assert result(dns, "10.1.1.1", "b-c-z@delim.test") == "pass"
    assert result(dns, "10.1.1.1", "c-b-z@delim.test") == "fail"


def test_ptr(dns):
    assert result(dns, "192.0.2.99", "a@ptr.test") == "pass"
    assert result(dns, "192.0.2.98", "a@ptr.test") == "fail"    # name elsewhere
    assert result(dns, "192.0.2.97", "a@ptr.test") == "fail"    # name not validated
    assert result(dns, "192.0.2.96", "a@ptr.test") == "fail"    # no PTR at all


def test_ptr_of_an_ipv6_client(dns):
    assert result(dns, "2001:db8:25::25", "a@ptr6.test") == "pass"
    assert result(dns, "2001:db8:25::26", "a@ptr6.test") == "fail"


def test_exp_explains_a_fail(dns):
    res, expl = spf(dns, "10.1.1.1", "a@exp.test")
    assert res == "fail"
    assert expl == ("10.1.1.1 is not one of exp.test's designated mail servers, "
                    "see http://exp.test/why.html?s=a%40exp.test&v=in-addr")
    assert spf(dns, "192.0.2.1", "a@exp.test") == ("pass", "")


def test_exp_macros_c_i_r_v_t_for_an_ipv6_client(dns):
    res, expl = spf(dns, "2001:db8::1", "bob@exp6.test")
    assert res == "fail"
    nibbles = ".".join("20010db8" + "0" * 23 + "1")
    m = re.fullmatch(r"2001:db8::1 (\S+) mx\.receiver\.test ip6 t=(\d+) unknown % %20", expl)
    assert m, expl
    assert m.group(1) == nibbles
    assert abs(int(m.group(2)) - time.time()) < 60


def test_p_macro_is_the_validated_name(dns):
    assert result(dns, "192.0.2.99", "a@pmech.test") == "pass"   # host.ptr.test
    assert result(dns, "192.0.2.97", "a@pmech.test") == "fail"   # unknown.pm.test
    assert spf(dns, "192.0.2.99", "a@pexp.test") == (
        "fail", "p=host.ptr.test P=host.ptr.test")
    assert spf(dns, "192.0.2.97", "a@pexp.test") == ("fail", "p=unknown P=unknown")
    # several validated: one under <domain> is taken before a.elsewhere.test
    # (pexp.test itself has no address, fake.pexp.test is not validated)
    res, expl = spf(dns, "192.0.2.95", "a@pexp.test")
    assert expl in ("p=x.pexp.test P=x.pexp.test", "p=y.pexp.test P=y.pexp.test"), expl


def test_exp_of_an_included_record_is_not_used(dns):
    assert spf(dns, "10.1.1.1", "a@incexp.test") == ("fail", "outer incexp.test")


def test_ten_lookups_pass_eleven_are_permerror(dns):
    assert result(dns, "10.0.0.10", "a@ten.test") == "pass"
    assert result(dns, "10.9.9.9", "a@ten.test") == "fail"
    assert result(dns, "10.9.9.9", "a@eleven.test") == "permerror"
    assert result(dns, "10.1.1.1", "a@incloop.test") == "permerror"


def test_two_void_lookups_pass_three_are_permerror(dns):
    assert result(dns, "192.0.2.1", "a@void2.test") == "pass"
    assert result(dns, "192.0.2.1", "a@void3.test") == "permerror"


def test_no_record_is_none(dns):
    assert result(dns, "10.1.1.1", "a@nowhere.test") == "none"     # NXDOMAIN
    assert result(dns, "10.1.1.1", "a@other.a.test") == "none"     # no TXT at all
    assert result(dns, "10.1.1.1", "a@other.test") == "none"       # TXT, not SPF
    assert result(dns, "10.1.1.1", "a@localhost") == "none"        # one label


def test_two_records_is_permerror(dns):
    assert result(dns, "10.1.1.1", "a@two.test") == "permerror"


def test_syntax_errors_are_permerror(dns):
    for dom in ("bad-cidr", "bad-mech", "bad-macro"):
        assert result(dns, "10.1.1.1", "a@%s.test" % dom) == "permerror", dom
    # the whole record is parsed before a term matches
    assert result(dns, "192.0.2.1", "a@bad-late.test") == "permerror"


def test_unknown_modifier_ignored_and_case_insensitive(dns):
    assert result(dns, "192.0.2.1", "a@unknown-mod.test") == "pass"
    assert result(dns, "192.0.2.1", "a@case.test") == "pass"
    assert result(dns, "10.1.1.1", "a@case.test") == "fail"


def test_txt_strings_are_joined(dns):
    assert result(dns, "192.0.2.1", "a@strings.test") == "pass"
    assert result(dns, "10.0.39.1", "a@long.test") == "pass"    # > 255 bytes
    assert result(dns, "10.0.40.1", "a@long.test") == "fail"


def test_records_past_udp_and_past_the_limit(dns):
    assert len(TXT["big.test"][0]) > 2048 and len(TXT["huge.test"][0]) > 4096
    assert result(dns, "10.1.1.19", "a@big.test") == "pass"     # the last one
    assert result(dns, "10.1.1.20", "a@big.test") == "fail"
    assert result(dns, "10.2.0.0", "a@huge.test") == "permerror"


def test_null_sender_uses_helo(dns):
    assert result(dns, "10.1.1.1", "", helo="helo.test") == "pass"
    assert result(dns, "10.1.1.1", "x@helo.test") == "fail"


def test_temperror_when_the_server_gives_no_answer(dns):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    out = run("127.0.0.1:%d" % port, "10.1.1.1", "a@ip4.test")
    assert out.split()[0] == "temperror"
    assert time.monotonic() - start < 10


def test_temperror_in_an_include(dns):
    # dnsmasq serves only .test: it refuses the rest
    assert result(dns, "10.1.1.1", "a@tempinc.test") == "temperror"


def test_cancel_frees_the_check(dns):
    # a server that never answers; the owner cancels after 200 ms: no
    # answer, no leak (LeakSanitizer), no use after free (ASan)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        out = run("127.0.0.1:%d" % s.getsockname()[1], "10.1.1.1", "a@ip4.test",
                  extra=["--cancel-after", "200"])
    assert out == "cancelled\n"


def test_cancel_midway(dns):
    # cancelled while its DNS answers come (the check is 10 lookups long)
    out = run(dns.server, "10.9.9.9", "a@ten.test", extra=["--cancel-after", "1"])
    assert out in ("cancelled\n", "fail \n")


def test_received_spf_header(dns):
    out = run(dns.server, "192.0.2.1", "a@ip4.test", extra=["--header"])
    first, header = out.split("\n", 1)
    assert first == "pass "
    assert header.endswith("\r\n")
    lines = header[:-2].split("\r\n")
    assert all(len(l) <= 78 for l in lines), lines
    assert all(l.startswith(" ") for l in lines[1:]), lines
    unfolded = "".join(lines)
    assert unfolded.startswith(
        "Received-SPF: pass (mx.receiver.test: domain of a@ip4.test designates "
        "192.0.2.1 as permitted sender) ")
    for kv in ("receiver=mx.receiver.test;", "client-ip=192.0.2.1;",
               'envelope-from="a@ip4.test";', "helo=client.test;", "identity=mailfrom;"):
        assert kv in unfolded


def test_received_spf_header_quotes_what_the_client_chose(dns):
    helo = 'evil"\r\nX-Injected: yes; (x'
    out = run(dns.server, "10.1.1.1", "a@fail.test", helo=helo, extra=["--header"])
    header = out.split("\n", 1)[1]
    lines = header[:-2].split("\r\n")
    assert all(l.startswith(" ") for l in lines[1:]), lines
    assert "X-Injected" not in [l.split(":")[0].strip() for l in lines]
    assert 'helo="evil\\"??X-Injected: yes; (x";' in "".join(lines)
    assert header.startswith("Received-SPF: fail ")


def test_result_names():
    def parse(text):
        p = subprocess.run([SPF_TOOL, "--result", text], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0 and p.stderr == ""
        return p.stdout.strip()
    names = ["pass", "none", "softfail", "fail", "temperror", "neutral", "permerror"]
    for i, name in enumerate(names):
        assert parse(name) == "%d %s" % (i, name)
        assert parse(name.upper()) == "%d %s" % (i, name)
        assert parse(str(i)) == "%d %s" % (i, name)
    for bad in ("7", "-1", "03", "", "failx", "fai"):
        assert parse(bad) == "-1", bad
