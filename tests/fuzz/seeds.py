#!/usr/bin/python3
"""seeds.py - writes the hand-made seed inputs of the fuzz harnesses.

    python3 tests/fuzz/seeds.py      (from the repository root)

Each harness gets tests/fuzz/corpus/<name>/seed-* files in the input layout
its header comment describes; files of other names (gen-* from
seed_queue_file.c, found-* kept from fuzzing runs) are left alone.  Also
writes tests/fuzz/config.dict from src/core/config_options.h.
"""
import os
import re
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "corpus")


def write(name, seeds):
    d = os.path.join(CORPUS, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.unlink(os.path.join(d, f))
    for label, data in seeds.items():
        if isinstance(data, str):
            data = data.encode("latin-1")
        with open(os.path.join(d, "seed-" + label), "wb") as fp:
            fp.write(data)


def nul(*fields):
    return b"\0".join(f.encode("latin-1") if isinstance(f, str) else f for f in fields)


# ---- smtp_cmd: one command line without CR LF ----
write("smtp_cmd", {
    "ehlo": "EHLO mx.example.org",
    "helo": "HELO [192.0.2.1]",
    "mail": "MAIL FROM:<alice@example.org>",
    "mail-null-size": "MAIL FROM:<> SIZE=10240",
    "mail-params": "mail from:<Alice@Example.ORG> BODY=8BITMIME SIZE=0 RET=HDRS ENVID=x+2Bid",
    "mail-space": "MAIL FROM: <alice@example.org>",
    "mail-nobrackets": "MAIL FROM:alice@example.org SIZE=5",
    "mail-junk-after": "MAIL FROM:<a@b.example>x",
    "rcpt": "RCPT TO:<bob@example.com>",
    "rcpt-quoted": 'RCPT TO:<"john doe"@example.org>',
    "rcpt-quoted-escape": 'RCPT TO:<"a\\"b>c"@example.org> NOTIFY=NEVER',
    "rcpt-quoted-open": 'RCPT TO:<"unterminated@example.org>',
    "rcpt-route": "RCPT TO:<@r1.example,@r2.example:u@d.example> "
                  "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@d.example",
    "rcpt-literal": "RCPT TO:<postmaster@[192.0.2.1]>",
    "rcpt-literal6": "RCPT TO:<u@[IPv6:2001:db8::1]>",
    "rcpt-bare": "RCPT TO:<postmaster>",
    "rcpt-dot": "RCPT TO:<u@d.example.>",
    "rcpt-bad-domain": "RCPT TO:<u@-d..example>",
    "rcpt-8bit": "RCPT TO:<j\xc3\xbcrgen@example.de>",
    "rcpt-long-local": "RCPT TO:<" + "l" * 65 + "@example.org>",
    "rcpt-long-label": "RCPT TO:<u@" + "d" * 64 + ".example>",
    "param-empty-value": "MAIL FROM:<a@b.example> SIZE=",
    "param-no-key": "MAIL FROM:<a@b.example> =x",
    "param-two-eq": "MAIL FROM:<a@b.example> KEY=val=ue",
    "param-long-key": "MAIL FROM:<a@b.example> " + "K" * 32 + "=1",
    "param-long-value": "MAIL FROM:<a@b.example> X=" + "v" * 256,
    "param-dash": "MAIL FROM:<a@b.example> -X=1 X-Y=2  Z",
    "data": "DATA",
    "rset": "RSET",
    "noop-blanks": "NOOP  hello \t ",
    "quit": "quit",
    "vrfy": "VRFY postmaster",
    "expn": "EXPN staff",
    "help": "HELP MAIL",
    "unknown": "STARTTLS",
    "auth": "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
    "five-letters": "MAILX FROM:<a@b>",
    "tab": "MAIL\tFROM:<a@b>",
})

# ---- addr: the text inside <...> ----
write("addr", {
    "plain": "alice@example.org",
    "upper": "Alice@Example.ORG",
    "dot": "alice@example.org.",
    "quoted-space": '"john doe"@example.org',
    "quoted-escapes": '"a\\"b\\\\c@d"@example.org',
    "quoted-empty": '""@example.org',
    "quoted-at": '"x@y"@example.com',
    "route": "@r1.example,@r2.example:u@d.example",
    "route-only": "@r1.example:",
    "literal": "u@[192.0.2.1]",
    "literal6": "u@[IPv6:2001:db8::1]",
    "literal6-lower": "u@[ipv6:::1]",
    "literal-bad": "u@[300.1.1.1]",
    "literal-short": "u@[1.2.3]",
    "literal-open": "u@[192.0.2.1",
    "bare": "postmaster",
    "local-64": "l" * 64 + "@example.org",
    "local-65": "l" * 65 + "@example.org",
    "label-63": "u@" + "d" * 63 + ".example",
    "label-64": "u@" + "d" * 64 + ".example",
    "domain-255": "u@" + ".".join(["d" * 63] * 4)[:255],
    "hyphen": "u@a-b.example",
    "hyphen-start": "u@-ab.example",
    "hyphen-end": "u@ab-.example",
    "double-dot": "a..b@example.org",
    "lead-dot": ".a@example.org",
    "empty": "",
    "at": "@",
    "no-domain": "u@",
    "no-local": "@example.org",
    "two-at": "a@b@example.org",
    "8bit": "j\xc3\xbcrgen@example.de",
    "control": "a\x01b@example.org",
    "atext": "!#$%&'*+-/=?^_`{|}~@example.org",
})

# ---- smtp_data: 5 control bytes, chunk lengths, then the stream ----
def data(stream, max_size=0xff, max_header=0xff, chunks=b"", limit=0):
    return bytes([max_size, max_header, len(chunks), limit, 0]) + chunks + \
        stream.encode("latin-1")


MSG = "Subject: test\r\nFrom: a@b.example\r\n\r\nHello\r\n"
write("smtp_data", {
    "simple": data(MSG + ".\r\n"),
    "empty": data(".\r\n"),
    "pipelined": data(MSG + ".\r\nQUIT\r\n"),
    "stuffing": data(MSG + "..leading dot\r\n.\r\n..\r\n.\r\n"),
    "bytes": data(MSG + ".\r\n", chunks=b"\x01"),
    "split-end": data(MSG + ".\r\n", chunks=b"\x2d\x01\x01\x01"),
    "empty-feeds": data(MSG + ".\r\n", chunks=b"\x00\x03"),
    "bare-lf": data("Subject: x\n\nline\n.\nstill data\r\n.\r\n"),
    "bare-cr": data("Subject: x\r\n\r\na\rb\r\r\n.\r.\r\n.\r\n"),
    "smuggle-lf-dot": data("a\r\n\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"),
    "smuggle-dot-lf": data("a\r\n.\nRCPT TO:<x@y>\r\n.\r\n"),
    "smuggle-cr-dot": data("a\r.\r\nDATA\r\n.\r\n", chunks=b"\x02\x01"),
    "dot-cr-other": data(".\rx\r\n.\r\n"),
    "no-end": data(MSG + "no end yet\r\n."),
    "pending-cr": data(MSG + "\r\n.\r"),
    "long-line": data("X: " + "y" * 1100 + "\r\n\r\n.\r\n"),
    "header-toobig": data("X: " + "y" * 300 + "\r\n\r\nb\r\n.\r\n", max_header=10),
    "toobig": data(MSG + "z" * 200 + "\r\n.\r\n", max_size=4),
    "toobig-exact": data("abcd\r\n.\r\n", max_size=0),
    "buffer-limit": data(MSG + "z" * 100 + "\r\n.\r\n", chunks=b"\x07", limit=3),
    "no-header-end": data("X: y\r\nZ: w\r\n.\r\n", max_header=1),
    "lf-header-end": data("X: y\n\nbody\r\n.\r\n", max_header=2),
    "binary": data("\x00\x01\xff\xfe\r\n\x00.\r\n.\r\n"),
})

# ---- queue_file: generator-mode inputs (the l files are gen-*) ----
write("queue_file", {
    "build-simple": b"\x00" + nul("1700000000_000001_42_7", "mx1", "alice@example.org",
                                   "192.0.2.1", "client.example", "helo.example", "",
                                   "7BIT") + b"\0" + bytes(30) + b"\x01P" +
                    nul("bob@example.org", "", "250 ok") + b"\0",
    "build-awkward": b"\x02" + nul("id with space", "-", "", "%", "%2D", "\t\r\n",
                                   "\xc3\xa9", "8BITMIME") + b"\0" + b"\xff" * 30 +
                     b"\x03D" + nul("x", "-", "a b%c") + b"\0\x01Fy\0\0\0",
    "build-outside": b"\x01" + nul("", "", "", "", "", "", "", "") + b"\0" +
                     b"\xff" * 40 + b"\x02\x00\0\0\0\xff",
})

# ---- config: selor.conf texts ----
with open(os.path.join(ROOT, "..", "..", "conf", "selor.conf"), "rb") as fp:
    example_conf = fp.read()
with open(os.path.join(ROOT, "..", "..", "conf", "selor.dev.conf"), "rb") as fp:
    dev_conf = fp.read()
write("config", {
    "example": example_conf,
    "dev": dev_conf,
    "empty": "",
    "comments": "# only comments\n\n   # indented\n\t\n",
    "numbers": "Port 2525\nLimit_buf -0\nFrom_level_check -1\nMax_mail_size +2048\n",
    "number-range": "Port 65536\n",
    "number-overflow": "Max_mail_size 99999999999999999999\n",
    "number-junk": "Port 25x\n",
    "number-quoted": 'Port "25"\n',
    "text-bare": "Server_name mx1.example.net\n",
    "text-escapes": 'Server_name "a\\"b\\\\c\\d"   # comment\n',
    "text-unterminated": 'Server_name "mx1\n',
    "text-control": 'Server_name "a\x01b"\n',
    "text-tab-8bit": 'Subject_error_msg "\t[Fehler] Zustellung f\xc3\xbcr"\n',
    "after-value": 'Server_name "x" y\n',
    "no-value": "Server_name\n",
    "no-value-comment": "Port # nothing\n",
    "bad-name-char": "Max-mail-size 5\n",
    "digit-name": "5Port 25\n",
    "unknown": "Max_mail_siz 5\nTotally_unknown_option \"x\"\n",
    "module-options": 'Module "mod/selor_passwd.so"\nModule "/x.so"\n'
                      'Passwd_file "accounts"\nPasswd_system "/etc/passwd"\n',
    "aliases": 'Summary_log "s.log"\nEvent.Limit "r"\nIncorret_pass_delay 5\n',
    "duplicate": "Port 25\nPort 26\nPort 27\n",
    "timezone": 'Timezone "-0300"\n',
    "timezone-bad": 'Timezone "+1500"\n',
    "timezone-shape": 'Timezone "UTC"\n',
    "msg-bad": 'Msg_welcome "Hello"\n',
    "msg-ok": 'Msg_welcome "220"\nMsg_cannot_connect "no code needed"\n',
    "bind": 'Bind_address "::1"\n',
    "bind-bad": 'Bind_address "localhost"\n',
    "dns": 'Dns_servers "127.0.0.1, [::1]:5353"\n',
    "dns-bad": 'Dns_servers "127.0.0.1,,x"\n',
    "relay": 'Relay_host "[192.0.2.1]:2525"\nRedis_server "redis.example:6379"\n',
    "relay-bad": 'Relay_host "host:99999"\n',
    "queue-empty": 'Queue_path ""\n',
    "paths": 'Queue_path "./var/spool"\nTemp_path "var/tmp"\nPid_file "/run/s.pid"\n',
    "crlf": "Port 25\r\nServer_name \"x\"\r\n",
    "nul": "Port 25\nServer_name \"a\0b\"\n",
    "long-line": "Server_name \"" + "x" * 8200 + "\"\n",
})

# ---- passwd: Passwd_file, then NUL and the Passwd_system file ----
SHA512 = ("$6$5gAwp/OeAN2jRZD9$pEsNm.xiXL9VL.1p374JruZZJwkJj.SlWvpdD1qZTjHwRKwbUtpg"
          "n9EsWWiQLedZyfTl6WJ.2HoM4zryor5P30")
SHA256 = "$5$YEAS0RQWEq7Ltgul$BeM5ztDGGxGrHm.SmKJ3oLyHV6p7UfGXykcZ9xfWkQ7"
BLF = "$2b$04$Qub2vPVIc7HljSoTvNkQR.X4TT43Ua51IIzoq5nayWD4ts8lHGUdG"
MD5 = "$1$wotl8rUN$XO70eEdxx4hu7quZDx6zr/"
with open(os.path.join(ROOT, "..", "..", "conf", "demo.passwd"), "rb") as fp:
    demo_passwd = fp.read()
SYS = ("root:x:0:0:root:/root:/bin/bash\n"
       "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
       "Bob:x:1000:1000:Bob,,,:/home/bob:/bin/bash\n"
       "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"
       "+nisuser::::::\n-other::::::\n"
       "carol:x:4294967294:100::/home/carol:/bin/sh\n")
write("passwd", {
    "demo": demo_passwd,
    "full": "# accounts\n\n"
            "alice@example.org:{PLAIN}wonder:1001:1002:Alice:/var/mail/alice:/bin/false:"
            "quota=10M dlocal=/usr/bin/deliver -d %l\n"
            "Bob@Example.ORG:{plain}builder\r\n"
            "staff@example.org:{ALIAS}alice@example.org, bob@example.org,carol@elsewhere.net\n"
            "@example.net:{ALIAS}postmaster@example.org\n"
            "nologin@example.org::::::/home/nologin\n"
            "big@example.org:{PLAIN}x::::/h::quota=2G\n",
    "hashes": "s512@h.example:{SHA512-CRYPT}" + SHA512 + "\n"
              "s256@h.example:{SHA256-CRYPT}" + SHA256 + "\n"
              "blf@h.example:{BLF-CRYPT}" + BLF + "\n"
              "md5@h.example:{CRYPT}" + MD5 + "\n"
              "bare@h.example:" + SHA512 + "\n",
    "system": "*@sys.example:{SYSTEM}\nlocal@sys.example:{PLAIN}pw\n\0" + SYS,
    "system-dup": "*@a.example:{SYSTEM}\n*@a.example:{SYSTEM}\n\0" + SYS,
    "system-junk": "*@a.example:{SYSTEM}x\n\0",
    "system-bad-sys": "*@a.example:{SYSTEM}\n\0short:line\n",
    "system-bad-uid": "*@a.example:{SYSTEM}\n\0u:x:abc:1::/h:/bin/sh\n",
    "system-empty-login": "*@a.example:{SYSTEM}\n\0:x:1000:1000::/h:/bin/sh\n",
    "star-not-system": "*@a.example:{PLAIN}x\n",
    "unknown-scheme": "u@a.example:{MD4}abc\n",
    "unterminated-scheme": "u@a.example:{PLAIN\n",
    "empty-plain": "u@a.example:{PLAIN}\n",
    "bad-hash": "u@a.example:{SHA512-CRYPT}$5$notsha512\n",
    "bad-uid": "u@a.example:{PLAIN}x:50O0\n",
    "big-gid": "u@a.example:{PLAIN}x:1:4294967295\n",
    "unknown-extra": "u@a.example:{PLAIN}x::::::size=5\n",
    "bad-quota": "u@a.example:{PLAIN}x::::::quota=5T\n",
    "huge-quota": "u@a.example:{PLAIN}x::::::quota=99999999999G\n",
    "dup-mailbox": "u@a.example:{PLAIN}x\nU@A.example:{PLAIN}y\n",
    "dup-alias": "l@a.example:{ALIAS}x@y\nl@a.example:{ALIAS}z@y\n",
    "alias-fields": "l@a.example:{ALIAS}x@y:1000\n",
    "alias-empty-target": "l@a.example:{ALIAS}x@y,,z@y\n",
    "alias-bad-target": "l@a.example:{ALIAS}nobody\n",
    "alias-many": "l@a.example:{ALIAS}" + ",".join("t%d@x.example" % i for i in range(1001)) + "\n",
    "alias-max": "l@a.example:{ALIAS}" + ",".join("t%d@x" % i for i in range(1000)) + "\n",
    "catchall-mailbox": "@a.example:{PLAIN}x\n",
    "no-at": "user:{PLAIN}x\n",
    "space-key": "u ser@a.example:{PLAIN}x\n",
    "long-key": "u" * 510 + "@a.example:{PLAIN}x\n",
    "no-password-field": "u@a.example\n",
    "nul-line": "*@a.example:{SYSTEM}\n\0root:x:0:0::/r:/bin/sh\nbad\0line\n",
    "key-512": "u" * 502 + "@a.example:{PLAIN}x\n",
    "long-dlocal": "u@a.example:{PLAIN}x::::::dlocal=/bin/" + "d" * 17000 + "\n",
})

# ---- smtp_reply: max, limit, then server replies (and Msg_* pieces) ----
def reply(text, max_=0xff, limit=0xff):
    return bytes([max_, limit]) + text.encode("latin-1")


write("smtp_reply", {
    "greeting": reply("220 mx.example.com ESMTP ready\r\n"),
    "ehlo": reply("250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                  "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"),
    "pipelined": reply("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"),
    "reject": reply("550 5.1.1 <bob@example.com>: Recipient address rejected\n"),
    "code-only": reply("221\r\n250-\r\n250\r\n"),
    "code-change": reply("250-first\r\n251 second\r\n"),
    "bad-code": reply("600 no\r\n199 no\r\n25\r\n250x\r\n"),
    "bad-sep": reply("250_x\r\n250 ok\r\n"),
    "long-line": reply("250 " + "x" * 600 + "\r\n", max_=10),
    "text-limit": reply("250-" + "y" * 40 + "\r\n250-" + "y" * 40 + "\r\n250 z\r\n", limit=4),
    "lf-only": reply("250-a\n250-b\n250 c\n"),
    "partial": reply("250-a\r\n250 b"),
    "cr-inside": reply("250 a\rb\r\n"),
    "msg": reply("\x05550 5.1.1 No such user\0<1764_1_2_3>\0example.org\0\x02"),
    "msg-empty": reply("\x01\0\0\0\x03"),
    "msg-tabs": reply("\x02 \t text\t\0\0 dom \0\x01"),
})

# ---- bounce: ctl, nrcpt, arrival, now, strings, then the message ----
def bounce(ctl, strings, rcpts, message, arrival=1764073273, now=1764080000):
    b = bytes([ctl, len(rcpts)]) + struct.pack(">II", arrival, now)
    fields = list(strings)
    for r in rcpts:
        fields += list(r)
    return b + nul(*fields) + b"\0" + message.encode("latin-1")


BASE = ["mx1.example.net", "<MAILER-DAEMON@localhost", "[Mail delivery error]",
        "postmaster@example.net", "alice@example.org", "1764073273_004211_4975_482131",
        "1764080000_000001_77_482131/report"]
HDRS = ("Received: from client.example (client.example [192.0.2.1])\n"
        "\tby mx1.example.net\nMessage-ID:\n <orig.123@example.org>\n"
        "From: Alice <alice@example.org>\nSubject: hello\n\nbody line\n")
R1 = ("bob@example.com", "team@example.com", "550 5.1.1 <bob@example.com>: no such user",
      "mx.example.com", "")
R2 = ("carol@example.net", "", "giving up after 48 attempts: 451 4.3.0 try later", "", "")
R3 = ("dave@example.net", "", "maildrop: quota exceeded", "", "5.2.2")
TPL = "Hi %s,\n\nyour message %d to %n recipient(s) via %h at %t failed:\n   %r\n" \
      "Ask %p. 100%% sure. %x stays.\n"
write("bounce", {
    "builtin": bounce(0, BASE + [""], [R1, R2, R3], HDRS),
    "template": bounce(1, BASE + [TPL], [R1, R2], HDRS),
    "template-utf8": bounce(1, BASE + ["Zustellung f\xc3\xbcr %s fehlgeschlagen: %r\n"],
                            [R1], HDRS),
    "template-latin1": bounce(1, BASE + ["\xe9chec de livraison %r\n"], [R1], HDRS),
    "template-long": bounce(1, BASE + [("word " * 300) + "x" * 1200 + "\n%r"], [R1], HDRS),
    "template-empty": bounce(1, BASE + [""], [R1], ""),
    "no-rcpt": bounce(2, BASE + [""], [], ""),
    "no-headers": bounce(2, BASE + [""], [R1], HDRS),
    "header-len": bounce(4, BASE + [""], [R1], HDRS + "X-Not: header\n"),
    "headers-8bit": bounce(0, BASE + [""], [R1], "Subject: caf\xe9\nX: \x01\x1b\r\n\nb\n"),
    "headers-boundary": bounce(0, BASE + [""], [R1],
                               "X: --1764080000_000001_77_482131/report\n\n"),
    "headers-nul": bounce(0, BASE + [""], [R1], "X: a\0b\nY: " + "z" * 1100 + "\n\n"),
    "default-boundary": bounce(0, BASE[:6] + ["", ""], [R1], HDRS),
    "from-name": bounce(0, ["mx1.example.net", "Selor, the MTA <md@example.net>", "",
                            "", '"john doe"@example.org', "id", "b", ""], [R1], HDRS),
    "from-comment": bounce(0, ["", "md@example.net (Mail System)", "R\xc3\xa9sultat",
                               "", "", "", "", ""], [R1], HDRS),
    "from-bare": bounce(0, ["x", "MAILER-DAEMON", "\xff\xfe bad", "", "a@b", "", "", ""],
                        [R2], ""),
    "injection": bounce(0, BASE + [""],
                        [("x@y\r\nBcc: evil@example", "o\nX: y",
                          "550 bad\r\nContent-Type: text/html", "mx\n.\n", "5.1.1\n")], HDRS),
    "long-answer": bounce(0, BASE + [""], [("a@b", "", "550 " + "w" * 1200, "", "")], HDRS),
    "long-word-field": bounce(0, ["s" * 1100, "", "", "", "", "", "", ""],
                              [("a" * 950 + "@b", "", "", "", "")], ""),
    "status-given": bounce(0, BASE + [""], [("a@b", "", "", "", "4.4.7"),
                                            ("c@d", "", "", "", "2.0.0"),
                                            ("e@f", "", "", "", "5.1.1.1")], HDRS),
    "answers": bounce(0, BASE + [""], [("a@b", "", "421-4.7.0 busy", "", ""),
                                       ("c@d", "", "  550\t5.7.1 no", "", ""),
                                       ("e@f", "", "5.1.10 odd", "", ""),
                                       ("g@h", "", "4.1.1x", "", ""),
                                       ("i@j", "", "250 2.0.0 ok", "", "")], HDRS),
    "zero-times": bounce(0, BASE + [""], [R1], HDRS, arrival=0, now=0),
})

# ---- smtp_auth: one AUTH response line (also read as a PLAIN message) ----
def b64(raw):
    import base64
    return base64.b64encode(raw.encode("latin-1")).decode()


write("smtp_auth", {
    "plain": b64("\0alice@example.com\0alicepw"),
    "plain-authzid": b64("alice@example.com\0alice@example.com\0alicepw"),
    "plain-raw": "\0alice@example.com\0alicepw",
    "plain-empty-user": "\0\0pw",
    "plain-empty-pw": "\0user\0",
    "plain-three-nuls": "a\0b\0c\0d",
    "login-user": b64("alice@example.com"),
    "pad-one": "QUJD" + "QUI=",
    "pad-two": "QQ==",
    "pad-middle": "QQ==QUJD",
    "pad-three": "Q===",
    "bad-char": "QU!D",
    "short": "QUJ",
    "cancel": "*",
    "empty-ir": "=",
    "empty": "",
    "long": "QUJD" * 127,
})

# ---- config.dict: every option name (for libFuzzer's -dict) ----
names = []
with open(os.path.join(ROOT, "..", "..", "src", "core", "config_options.h")) as fp:
    for line in fp:
        m = re.match(r'CONF_(?:NUM|TEXT)\(\w+, "([^"]+)"', line) or \
            re.match(r'CONF_ALIAS\("([^"]+)"', line)
        if m:
            names.append(m.group(1))
with open(os.path.join(ROOT, "config.dict"), "w") as fp:
    fp.write("# selor.conf option names, from src/core/config_options.h (seeds.py)\n")
    for n in names:
        fp.write('"%s "\n' % n)
    fp.write('"\\""\n"\\\\"\n"#"\n"\\x0a"\n"-"\n"+"\n"0"\n"Passwd_system "\n')
