package fscrypt

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
)

// The kernel interface (Documentation/filesystems/fscrypt.rst): every call
// is an ioctl on a file descriptor of a directory on the file system.

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if cerr := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
	}); cerr != nil {
		return cerr
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// unsupported maps the errors of a file system without encryption support
// to ErrUnsupported, with what to do about it.
func unsupported(err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("%w (%w): use ext4 or f2fs with the encrypt feature (mkfs.ext4 -O encrypt, or tune2fs -O encrypt on an unmounted ext4)", ErrUnsupported, err)
	}
	return err
}

// policy is a directory's v2 encryption policy.
type policy struct {
	contents, filenames, flags uint8
	identifier                 KeyIdentifier
}

// getPolicy reads dir's policy. An unencrypted directory is (nil, nil).
func getPolicy(dir *os.File) (*policy, error) {
	arg := unix.FscryptGetPolicyExArg{Size: uint64(unsafe.Sizeof(unix.FscryptGetPolicyExArg{}.Policy))}
	err := ioctl(dir, unix.FS_IOC_GET_ENCRYPTION_POLICY_EX, unsafe.Pointer(&arg))
	if errors.Is(err, unix.ENODATA) {
		return nil, nil
	}
	if err != nil {
		return nil, unsupported(err)
	}
	if arg.Policy[0] != unix.FSCRYPT_POLICY_V2 {
		return nil, fmt.Errorf("%w: the directory has a v%d policy, not v2", ErrBadMetadata, arg.Policy[0])
	}
	v2 := (*unix.FscryptPolicyV2)(unsafe.Pointer(&arg.Policy))
	return &policy{contents: v2.Contents_encryption_mode, filenames: v2.Filenames_encryption_mode, flags: v2.Flags, identifier: v2.Master_key_identifier}, nil
}

// setPolicy gives the empty directory dir our v2 policy under identifier;
// the key must be in the kernel.
func setPolicy(dir *os.File, id KeyIdentifier) error {
	p := unix.FscryptPolicyV2{
		Version:                   unix.FSCRYPT_POLICY_V2,
		Contents_encryption_mode:  ContentsMode,
		Filenames_encryption_mode: FilenamesMode,
		Flags:                     PolicyFlags,
		Master_key_identifier:     id,
	}
	return unsupported(ioctl(dir, unix.FS_IOC_SET_ENCRYPTION_POLICY, unsafe.Pointer(&p)))
}

// addKeyArg is struct fscrypt_add_key_arg with its flexible raw[] array.
type addKeyArg struct {
	unix.FscryptAddKeyArg
	raw [cryptocore.WideKeySize]byte
}

// addKey adds the master key k to the file system of f and returns the
// identifier the kernel computed. It zeroes its copy of the key; the caller
// zeroes k.
func addKey(f *os.File, k *cryptocore.WideKey) (KeyIdentifier, error) {
	var arg addKeyArg
	defer clear(arg.raw[:])
	arg.Key_spec.Type = unix.FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER
	arg.Raw_size = cryptocore.WideKeySize
	copy(arg.raw[:], k[:])
	if err := ioctl(f, unix.FS_IOC_ADD_ENCRYPTION_KEY, unsafe.Pointer(&arg)); err != nil {
		return KeyIdentifier{}, unsupported(err)
	}
	var id KeyIdentifier
	copy(id[:], arg.Key_spec.U[:identSize])
	return id, nil
}

func keySpec(id KeyIdentifier) unix.FscryptKeySpecifier {
	s := unix.FscryptKeySpecifier{Type: unix.FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER}
	copy(s.U[:], id[:])
	return s
}

// removeKey removes the key id from f's file system for this user and
// returns the kernel's removal status flags. ENOKEY: it was not there.
func removeKey(f *os.File, id KeyIdentifier) (uint32, error) {
	arg := unix.FscryptRemoveKeyArg{Key_spec: keySpec(id)}
	err := ioctl(f, unix.FS_IOC_REMOVE_ENCRYPTION_KEY, unsafe.Pointer(&arg))
	return arg.Removal_status_flags, err
}

// keyStatus is what FS_IOC_GET_ENCRYPTION_KEY_STATUS reports.
type keyStatus struct {
	status, flags, users uint32
}

func getKeyStatus(f *os.File, id KeyIdentifier) (keyStatus, error) {
	arg := unix.FscryptGetKeyStatusArg{Key_spec: keySpec(id)}
	if err := ioctl(f, unix.FS_IOC_GET_ENCRYPTION_KEY_STATUS, unsafe.Pointer(&arg)); err != nil {
		return keyStatus{}, unsupported(err)
	}
	return keyStatus{status: arg.Status, flags: arg.Status_flags, users: arg.User_count}, nil
}
