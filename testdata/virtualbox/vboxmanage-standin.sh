#!/usr/bin/env bash
# A stand-in for VBoxManage: keeps VMs, host-only interfaces and networks,
# extra data and guest properties as files under $VBOX_STANDIN_DIR and
# answers each call in the formats of the recorded outputs beside this
# script (README.md names their sources). Every call is appended to
# $VBOX_STANDIN_DIR/calls.log, one line, arguments separated by spaces.
#
# Injected failures: each line of $VBOX_STANDIN_DIR/faults is
#   <prefix of the call><TAB><fixture file><TAB><times><TAB><exit code>
# and the first call starting with <prefix> prints the fixture on stderr
# and exits with <exit code>, <times> times.
# $VBOX_STANDIN_DIR/version overrides the version (default 7.0.14r161095);
# $VBOX_STANDIN_DIR/ignore-acpi makes guests ignore the ACPI power button.
# Per VM (vms/NAME/): `keys` holds the scan codes pressed, `nvram` the
# modifynvram steps taken.
set -euo pipefail
dir=${VBOX_STANDIN_DIR:?set VBOX_STANDIN_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$dir/vms" "$dir/ifs" "$dir/nets" "$dir/props" "$dir/machines"
line="$*"
printf '%s\n' "$line" >>"$dir/calls.log"

if [[ -f $dir/faults ]]; then
  tmp=$(mktemp)
  hit=""
  while IFS=$'\t' read -r prefix fixture times code; do
    if [[ -z $hit && $times -gt 0 && $line == "$prefix"* ]]; then
      hit="$fixture $code"
      times=$((times - 1))
    fi
    printf '%s\t%s\t%s\t%s\n' "$prefix" "$fixture" "$times" "$code" >>"$tmp"
  done <"$dir/faults"
  mv "$tmp" "$dir/faults"
  if [[ -n $hit ]]; then
    read -r fixture code <<<"$hit"
    cat "$here/$fixture" >&2
    exit "$code"
  fi
fi

die() { # the recorded error texts' shape
  printf 'VBoxManage: error: %s\n' "$1" >&2
  if [[ -n ${2:-} ]]; then printf 'VBoxManage: error: Details: code %s\n' "$2" >&2; fi
  exit 1
}
not_found() {
  sed "s/dev-w9/$1/" "$here/error-not-found.txt" >&2
  exit 1
}
# A VM by name or UUID.
vm_path() {
  local n=$1
  if [[ -d $dir/vms/$n ]]; then echo "$dir/vms/$n"; return; fi
  local d
  for d in "$dir"/vms/*; do
    [[ -d $d ]] || continue
    if [[ $(cat "$d/uuid") == "$n" ]]; then echo "$d"; return; fi
  done
  return 1
}
getv() { sed -n "s/^$2=\"\\(.*\\)\"\$/\\1/p; s/^$2=\\([0-9]*\\)\$/\\1/p" "$1/info" | head -n1; }
setv() { # file key value [quoted]
  local f=$1/info k=$2 v=$3
  grep -v "^$k=" "$f" >"$f.tmp" || true
  if [[ ${4:-q} == q ]]; then printf '%s="%s"\n' "$k" "$v" >>"$f.tmp"; else printf '%s=%s\n' "$k" "$v" >>"$f.tmp"; fi
  mv "$f.tmp" "$f"
}
setq() { # a quoted key such as "SATA-0-0"
  local f=$1/info k=$2 v=$3
  grep -v "^\"$k\"=" "$f" >"$f.tmp" || true
  printf '"%s"="%s"\n' "$k" "$v" >>"$f.tmp"
  mv "$f.tmp" "$f"
}
new_uuid() { cat /proc/sys/kernel/random/uuid; }
make_vm() { # name group ostype
  local name=$1 d="$dir/vms/$1" m="$dir/machines/$1"
  [[ -e $d ]] && die "Machine settings file '$m/$1.vbox' already exists" "VBOX_E_FILE_ERROR (0x80bb0004)"
  mkdir -p "$d" "$m"
  : >"$m/$name.vbox"
  new_uuid >"$d/uuid"
  cat >"$d/info" <<INFO
name="$name"
Encryption:     disabled
groups="$2"
ostype="$3"
UUID="$(cat "$d/uuid")"
CfgFile="$m/$name.vbox"
SnapFldr="$m/Snapshots"
LogFldr="$m/Logs"
memory=128
cpus=1
firmware="BIOS"
VMState="poweroff"
VMStateChangeTime="2026-12-01T10:00:00.000000000"
nic1="nat"
nic2="none"
INFO
}

case "${1:-}" in
--version)
  cat "$dir/version" 2>/dev/null || echo "7.0.14r161095"
  ;;
list)
  case "$2" in
  vms)
    for d in "$dir"/vms/*; do
      [[ -d $d ]] || continue
      printf '"%s" {%s}\n' "$(basename "$d")" "$(cat "$d/uuid")"
    done
    ;;
  hostonlyifs)
    first=1
    for f in "$dir"/ifs/*; do
      [[ -f $f ]] || continue
      n=$(basename "$f")
      read -r ip mask <"$f"
      [[ $first == 1 ]] || echo
      first=0
      # The shape of testdata/virtualbox/list-hostonlyifs.txt.
      printf 'Name:            %s\nGUID:            786f6276-656e-4074-8000-0a0027000000\nDHCP:            Disabled\nIPAddress:       %s\nNetworkMask:     %s\nIPV6Address:\nIPV6NetworkMaskPrefixLength: 0\nHardwareAddress: 0a:00:27:00:00:00\nMediumType:      Ethernet\nStatus:          Up\nVBoxNetworkName: HostInterfaceNetworking-%s\n' "$n" "$ip" "$mask" "$n"
    done
    ;;
  hostonlynets)
    for f in "$dir"/nets/*; do
      [[ -f $f ]] || continue
      n=$(basename "$f")
      read -r mask lower upper <"$f"
      # The shape of testdata/virtualbox/list-hostonlynets.txt.
      printf 'Name:            %s\nGUID:            249ae3f6-cab1-4fb2-b92b-defd97d59cd0\n\nState:           Enabled\nNetworkMask:     %s\nLowerIP:         %s\nUpperIP:         %s\nVBoxNetworkName: hostonly-%s\n\n' "$n" "$mask" "$lower" "$upper" "$n"
    done
    ;;
  *) die "Unknown list: $2" ;;
  esac
  ;;
hostonlyif)
  case "$2" in
  create)
    i=0
    while [[ -e $dir/ifs/vboxnet$i ]]; do i=$((i + 1)); done
    echo "0.0.0.0 255.255.255.0" >"$dir/ifs/vboxnet$i"
    echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
    echo "Interface 'vboxnet$i' was successfully created"
    ;;
  ipconfig)
    [[ -f $dir/ifs/$3 ]] || die "The host network interface named '$3' could not be found" "E_INVALIDARG (0x80070057)"
    ip=$5 mask=$7
    # VirtualBox >= 6.1.28 refuses ranges networks.conf does not allow.
    if [[ -f $dir/allowed-prefix && $ip != $(cat "$dir/allowed-prefix")* ]]; then
      die "Code E_ACCESSDENIED (0x80070005) - Access denied (extended info not available)"
    fi
    echo "$ip $mask" >"$dir/ifs/$3"
    ;;
  remove)
    [[ -f $dir/ifs/$3 ]] || die "Could not find a host interface named '$3'" "VBOX_E_OBJECT_NOT_FOUND (0x80bb0001)"
    rm "$dir/ifs/$3"
    echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
    ;;
  esac
  ;;
hostonlynet)
  case "$2" in
  add) # --name N --netmask M --lower-ip L --upper-ip U --enable
    echo "$5 $7 $9" >"$dir/nets/$4" ;;
  remove)
    [[ -f $dir/nets/$4 ]] || die "Could not find a host-only network named '$4'" "VBOX_E_OBJECT_NOT_FOUND (0x80bb0001)"
    rm "$dir/nets/$4" ;;
  esac
  ;;
getextradata)
  f="$dir/props/global$(echo "$3" | tr / _)"
  if [[ -f $f ]]; then echo "Value: $(cat "$f")"; else echo "No value set!"; fi
  ;;
setextradata)
  f="$dir/props/global$(echo "$3" | tr / _)"
  if [[ $# -ge 4 ]]; then echo "$4" >"$f"; else rm -f "$f"; fi
  ;;
createvm) # --name N --groups G --ostype O --register
  make_vm "$3" "$5" "$7"
  echo "Virtual machine '$3' is created and registered."
  echo "UUID: $(cat "$dir/vms/$3/uuid")"
  echo "Settings file: '$dir/machines/$3/$3.vbox'"
  ;;
showvminfo)
  d=$(vm_path "$2") || not_found "$2"
  cat "$d/info"
  ;;
clonemedium) # disk SRC DST --format VDI
  [[ -f $3 ]] || die "Could not find file for the medium '$3' (VERR_FILE_NOT_FOUND)" "VBOX_E_FILE_ERROR (0x80bb0004)"
  [[ -e $4 ]] && die "Cannot register the hard disk '$4' because a hard disk with UUID already exists" "E_INVALIDARG (0x80070057)"
  cp "$3" "$4"
  echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
  echo "Clone medium created in format 'VDI'. UUID: $(new_uuid)"
  ;;
createmedium) # disk --filename F --size MiB --format VDI
  [[ -e $4 ]] && die "Failed to create medium: Could not create the medium storage unit '$4'. VD: cannot create image '$4' (VERR_ALREADY_EXISTS)" "VBOX_E_FILE_ERROR (0x80bb0004)"
  # The stand-in's disk: a text file naming its capacity, which
  # showmediuminfo reports and clonemedium copies.
  printf '<<< stand-in VDI >>>\ncapacity %s MBytes\n' "$6" >"$4"
  echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
  echo "Medium created. UUID: $(new_uuid)"
  ;;
closemedium) rm -f "$3" ;;
storagectl)
  d=$(vm_path "$2") || not_found "$2"
  setv "$d" storagecontrollername0 "$4"
  setv "$d" storagecontrollertype0 IntelAhci
  ;;
storageattach) # VM --storagectl C --port P --device 0 --type T --medium M
  d=$(vm_path "$2") || not_found "$2"
  setq "$d" "SATA-$6-0" "${12}"
  if [[ ${10} == hdd ]]; then setq "$d" "SATA-ImageUUID-$6-0" "$(new_uuid)"; fi
  ;;
modifyvm)
  d=$(vm_path "$2") || not_found "$2"
  [[ $(getv "$d" VMState) == poweroff ]] || die "The machine '$2' is already locked for a session (or being unlocked)" "VBOX_E_INVALID_OBJECT_STATE (0x80bb0007)"
  shift 2
  while [[ $# -gt 0 ]]; do
    k=${1#--}
    case $k in
    uart1) setv "$d" uart1 "$2,$3"; shift 3; continue ;;
    uartmode1) setv "$d" uartmode1 "$2,$3"; shift 3; continue ;;
    firmware) setv "$d" firmware "$(echo "$2" | tr '[:lower:]' '[:upper:]')" ;;
    memory | cpus) setv "$d" "$k" "$2" n ;;
    host-only-net2) setv "$d" hostonly-network2 "$2" ;;
    nic2) if [[ $2 == hostonlynet ]]; then setv "$d" nic2 hostonlynetwork; else setv "$d" nic2 "$2"; fi ;;
    *) setv "$d" "$k" "$2" ;;
    esac
    shift 2
  done
  ;;
modifynvram) # VM inituefivarstore|enrollmssignatures|enrollorclpk|secureboot --enable
  d=$(vm_path "$2") || not_found "$2"
  [[ $(getv "$d" VMState) == poweroff ]] || die "The machine '$2' is already locked for a session (or being unlocked)" "VBOX_E_INVALID_OBJECT_STATE (0x80bb0007)"
  [[ $(getv "$d" firmware) == EFI ]] || die "The machine '$2' has no UEFI firmware: there is no UEFI variable store" "VBOX_E_OBJECT_NOT_FOUND (0x80bb0001)"
  nv="$d/nvram"
  case "$3" in
  inituefivarstore) echo store >"$nv" ;;
  enrollmssignatures | enrollorclpk)
    grep -qx store "$nv" 2>/dev/null || die "The UEFI variable store of '$2' does not exist" "VBOX_E_OBJECT_NOT_FOUND (0x80bb0001)"
    echo "$3" >>"$nv" ;;
  secureboot)
    grep -qx enrollorclpk "$nv" 2>/dev/null || die "Secure Boot cannot be enabled without a platform key" "VBOX_E_INVALID_OBJECT_STATE (0x80bb0007)"
    echo "secureboot $4" >>"$nv" ;;
  *) die "Unknown subcommand: $3" ;;
  esac
  ;;
snapshot) # VM take NAME
  d=$(vm_path "$2") || not_found "$2"
  setv "$d" SnapshotName "$4"
  setv "$d" SnapshotUUID "$(new_uuid)"
  echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
  echo "Snapshot taken. UUID: $(getv "$d" SnapshotUUID)"
  ;;
clonevm) # SRC --snapshot S --options link --name N --groups G --register
  src=$(vm_path "$2") || not_found "$2"
  [[ $(getv "$src" SnapshotName) == "$4" ]] || die "Could not find a snapshot named '$4'" "VBOX_E_OBJECT_NOT_FOUND (0x80bb0001)"
  make_vm "$8" "${10}" "$(getv "$src" ostype)"
  d="$dir/vms/$8"
  # A linked clone keeps the source's hardware; its disk is a new
  # differencing image in its own Snapshots folder.
  grep -v -e '^name=' -e '^groups=' -e '^UUID=' -e '^CfgFile=' -e '^SnapFldr=' -e '^LogFldr=' -e '^Snapshot' -e '^"SATA' -e '^Encryption' "$src/info" | grep -v '^VMState' >"$d/hw"
  head -n 8 "$d/info" >"$d/info.new"
  cat "$d/hw" >>"$d/info.new"
  echo 'VMState="poweroff"' >>"$d/info.new"
  mv "$d/info.new" "$d/info"
  rm "$d/hw"
  u=$(new_uuid)
  setq "$d" "SATA-0-0" "$dir/machines/$8/Snapshots/{$u}.vdi"
  setq "$d" "SATA-ImageUUID-0-0" "$u"
  echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
  echo "Machine has been successfully cloned as \"$8\""
  ;;
showmediuminfo) # disk UUID|PATH
  cap=3584
  if [[ -f $3 ]]; then
    c=$(sed -n 's/^capacity \([0-9]*\) MBytes$/\1/p' "$3")
    [[ -n $c ]] && cap=$c
  fi
  echo "UUID:           $3"
  echo "Parent UUID:    base"
  echo "State:          created"
  echo "Type:           normal (differencing)"
  echo "Storage format: VDI"
  echo "Format variant: differencing default"
  echo "Capacity:       $cap MBytes"
  echo "Size on disk:   2 MBytes"
  ;;
modifymedium) # disk UUID --resize MiB
  echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
  ;;
guestproperty)
  d=$(vm_path "$3") || not_found "$3"
  f="$d/prop$(echo "$4" | tr / _)"
  case "$2" in
  set) echo "$5" >"$f" ;;
  get) if [[ -f $f ]]; then echo "Value: $(cat "$f")"; else echo "No value set!"; fi ;;
  esac
  ;;
startvm)
  d=$(vm_path "$2") || not_found "$2"
  case $(getv "$d" VMState) in
  running | paused) sed "s/odooT/$2/" "$here/error-locked.txt" >&2; exit 1 ;;
  esac
  setv "$d" VMState running
  echo "Waiting for VM \"$2\" to power on..."
  echo "VM \"$2\" has been successfully started."
  ;;
controlvm)
  d=$(vm_path "$2") || not_found "$2"
  st=$(getv "$d" VMState)
  case "$3" in
  acpipowerbutton)
    [[ $st == running ]] || { sed "s/dev-cp/$2/" "$here/error-not-running.txt" >&2; exit 1; }
    if [[ ! -f $dir/ignore-acpi ]]; then setv "$d" VMState poweroff; fi
    ;;
  poweroff)
    [[ $st == running || $st == paused ]] || { sed "s/dev-cp/$2/" "$here/error-not-running.txt" >&2; exit 1; }
    echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
    setv "$d" VMState poweroff
    ;;
  savestate)
    [[ $st == running || $st == paused ]] || { sed "s/dev-cp/$2/" "$here/error-not-running.txt" >&2; exit 1; }
    echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
    setv "$d" VMState saved
    ;;
  keyboardputscancode)
    [[ $st == running ]] || { sed "s/dev-cp/$2/" "$here/error-not-running.txt" >&2; exit 1; }
    shift 3
    echo "$*" >>"$d/keys"
    ;;
  pause) setv "$d" VMState paused ;;
  resume) setv "$d" VMState running ;;
  esac
  ;;
discardstate)
  d=$(vm_path "$2") || not_found "$2"
  setv "$d" VMState poweroff
  ;;
unregistervm) # VM --delete
  d=$(vm_path "$2") || not_found "$2"
  [[ $(getv "$d" VMState) == poweroff ]] || die "Cannot unregister the machine '$2' while it is locked" "VBOX_E_INVALID_OBJECT_STATE (0x80bb0007)"
  name=$(basename "$d")
  m="$dir/machines/$name"
  # --delete: the settings file, disks and logs; the folder if empty.
  rm -f "$m/$name.vbox" "$m"/*.vdi
  rm -rf "$m/Snapshots" "$m/Logs"
  rmdir "$m" 2>/dev/null || true
  rm -rf "$d"
  echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
  ;;
*)
  die "Unknown command: $*"
  ;;
esac
