"""selor.conf errors name the file and the line; -t and -V behave."""
import os
import subprocess

import selortest


def check_text(workdir, text):
    path = os.path.join(workdir, "t.conf")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([selortest.SELOR, "-t", "-c", path], capture_output=True,
                       text=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).strip(), path


def test_valid_config(node):
    code, out = node.check()
    assert code == 0, out
    assert "configuration is valid" in out


def test_unknown_option_with_suggestion(workdir):
    code, out, path = check_text(workdir, 'Port 2525\n\n# c\nMax_rcpt 10\n')
    assert code == 1
    assert out == "%s:4: unknown option Max_rcpt (did you mean Max_rcpts?)" % path


def test_case_matters(workdir):
    code, out, path = check_text(workdir, 'port 25\n')
    assert code == 1
    assert out.startswith("%s:1: unknown option port (did you mean Port?)" % path)


def test_missing_quote(workdir):
    code, out, path = check_text(workdir, 'Port 25\nServer_name "mx.example.com\n')
    assert code == 1
    assert out == "%s:2: missing closing quote in the value of Server_name" % path


def test_text_without_quotes(workdir):
    code, out, path = check_text(workdir, 'Server_name mx.example.com\n')
    assert code == 1
    assert out.startswith("%s:1: Server_name takes a text in double quotes" % path)


def test_bad_number_and_range(workdir):
    code, out, path = check_text(workdir, 'Max_rcpts ten\n')
    assert (code, out) == (1, '%s:1: Max_rcpts needs a number, got "ten"' % path)
    code, out, path = check_text(workdir, '\nPort 70000\n')
    assert (code, out) == (1, "%s:2: Port must be between 1 and 65535, got 70000" % path)


def test_reply_text_needs_code(workdir):
    code, out, path = check_text(workdir, 'Msg_no_mailbox "No such user"\n')
    assert code == 1
    assert out.startswith("%s:1: Msg_no_mailbox must start with a 3-digit SMTP reply code"
                          % path)


def test_both_spellings_accepted(workdir):
    code, out, _ = check_text(workdir, 'Summary_log "/tmp/x.log"\nSumary_log "/tmp/y.log"\n'
                              'Incorret_pass_delay 5\nIncorrect_pass_delay 4\n'
                              'Event.Limit ""\n')
    assert code == 0, out
    assert "Sumary_log was already set at line 1" in out


def test_missing_file(workdir):
    r = subprocess.run([selortest.SELOR, "-t", "-c", os.path.join(workdir, "none.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "none.conf: cannot open" in r.stderr


def test_module_errors_and_modseq(workdir):
    code, out, path = check_text(workdir, 'Module "/nonexistent/selor_x.so"\n')
    assert code == 1 and "cannot load module /nonexistent/selor_x.so" in out
    mod = os.path.join(selortest.MOD_DIR, "selor_passwd.so")
    pw = os.path.join(workdir, "pw")
    with open(pw, "w") as f:
        f.write("a@b.test:{PLAIN}x::::::\n")
    code, out, path = check_text(workdir, 'Module "%s"\nPasswd_file "%s"\n'
                                 'Modseq_auth "passwd ldap"\n' % (mod, pw))
    assert code == 1
    assert out == "%s:3: Modseq_auth names a module that is not loaded: ldap" % path


def test_passwd_file_error_has_its_line(workdir):
    mod = os.path.join(selortest.MOD_DIR, "selor_passwd.so")
    pw = os.path.join(workdir, "pw")
    with open(pw, "w") as f:
        f.write("a@b.test:{PLAIN}x::::::\n# comment\nbroken line without colon\n")
    code, out, _ = check_text(workdir, 'Module "%s"\nPasswd_file "%s"\n' % (mod, pw))
    assert code == 1
    assert "%s:3:" % pw in out


def test_version():
    r = subprocess.run([selortest.SELOR, "-V"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("selor ")


def test_start_with_bad_config_fails_with_file_and_line(nodes):
    n = nodes(options={"Max_rcpts": "lots"})
    n.start(wait=False)
    assert n.proc.wait(timeout=30) == 1
    assert "selor.conf:" in n.stderr() and "Max_rcpts takes a number" in n.stderr()


def test_module_option_of_the_wrong_type(workdir):
    mod = os.path.join(selortest.MOD_DIR, "selor_passwd.so")
    pw = os.path.join(workdir, "pw")
    with open(pw, "w") as f:
        f.write("a@b.test:{PLAIN}x::::::\n")
    code, out, path = check_text(workdir, 'Module "%s"\nPasswd_file "%s"\nPasswd_system 5\n'
                                 % (mod, pw))
    assert (code, out) == (1, "%s:3: Passwd_system takes a text in double quotes" % path)


def test_shipped_configurations_are_valid(workdir):
    """conf/selor.conf (the example) and conf/selor.dev.conf (make run) load,
    with the example's module and accounts pointed at files that exist here."""
    mod = os.path.join(selortest.MOD_DIR, "selor_passwd.so")
    demo = os.path.join(selortest.ROOT, "conf", "demo.passwd")
    with open(os.path.join(selortest.ROOT, "conf", "selor.conf")) as f:
        text = f.read().replace("/usr/local/selor/mod/selor_passwd.so", mod) \
                       .replace("/usr/local/selor/accounts.passwd", demo)
    code, out, _ = check_text(workdir, text)
    assert code == 0, out
    # and with the example rules (conf/rules/) switched on
    rules = os.path.join(workdir, "rules")
    os.makedirs(rules)
    shipped = os.path.join(selortest.ROOT, "conf", "rules")
    for name in os.listdir(shipped):
        with open(os.path.join(shipped, name)) as f, open(os.path.join(rules, name), "w") as o:
            o.write(f.read().replace("/usr/local/selor/rules", rules))
    text = "\n".join(l[2:] if l.startswith("# Event.") else l for l in text.split("\n"))
    code, out, _ = check_text(workdir, text.replace("/usr/local/selor/rules", rules))
    assert code == 0 and "Event." in text, out
    assert "configuration is valid (rules " in out and "(rules -)" not in out, out
    r = subprocess.run([selortest.SELOR, "-t", "-c", "conf/selor.dev.conf"],
                       capture_output=True, text=True, cwd=selortest.ROOT, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
